using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using NUnit.Framework;

namespace ClearBG.Tests
{
    /// <summary>The request a call sends and the result it makes of the answer.</summary>
    [TestFixture]
    public class ClientTests : TestBase
    {
        static readonly Regex Uuid4 = new Regex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");

        [Test]
        public void TheResultIsEveryFigureOfTheAnswer()
        {
            var server = Server(FakeServer.Ok("Idempotent-Replayed", "true"));
            var result = Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageBytes = Encoding.ASCII.GetBytes("photo"), Size = "small" }));
            CollectionAssert.AreEqual(FakeServer.Png1x1, result.Data);
            Assert.AreEqual(321, result.Width);
            Assert.AreEqual(481, result.Height);
            Assert.AreEqual("person", result.Type);
            Assert.AreEqual("image/png", result.ContentType);
            Assert.AreEqual(1m, result.CreditsCharged);
            Assert.AreEqual(49.5m, result.CreditsRemaining);
            Assert.AreEqual(new[] { 10, 20, 200, 400 }, new[] { result.Foreground.Top, result.Foreground.Left, result.Foreground.Width, result.Foreground.Height });
            Assert.AreEqual(500, result.RateLimit.Limit);
            Assert.AreEqual(499, result.RateLimit.Remaining);
            Assert.AreEqual(1790000000L, result.RateLimit.Reset);
            Assert.AreEqual("req-ok-1", result.RequestId);
            Assert.IsTrue(result.Replayed);
            Assert.AreEqual("321", result.Headers["x-width"]);
            Assert.AreEqual(server.Requests[0].Headers["idempotency-key"], result.IdempotencyKey);
        }

        [Test]
        public void AbsentHeadersAreNullAndTypeLevelNoneHasNoType()
        {
            var reply = new Reply { Body = new byte[] { 1 } };
            reply.Headers["Content-Type"] = "image/png";
            var result = Run(Client(Server(reply)).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "https://example.com/a.jpg" }));
            Assert.IsNull(result.Type);
            Assert.IsNull(result.Width);
            Assert.IsNull(result.Foreground);
            Assert.IsNull(result.RateLimit);
            Assert.AreEqual(0m, result.CreditsCharged);
            Assert.IsFalse(result.Replayed);
        }

        [Test]
        public void TheRequestCarriesTheKeyTheUserAgentAndAFreshUuidPerCall()
        {
            var server = Server();
            var client = Client(server);
            Run(client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "https://example.com/a.jpg" }));
            Run(client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "https://example.com/a.jpg" }));
            var first = server.Requests[0];
            var second = server.Requests[1];
            Assert.AreEqual("POST", first.Method);
            Assert.AreEqual("/v1.0/removebg", first.Path);
            Assert.AreEqual("test-key", first.Headers["x-api-key"]);
            Assert.AreEqual("clearbg-dotnet/" + ClearBGClient.Version, first.Headers["user-agent"]);
            Assert.IsTrue(Uuid4.IsMatch(first.Headers["idempotency-key"]), first.Headers["idempotency-key"]);
            Assert.AreNotEqual(first.Headers["idempotency-key"], second.Headers["idempotency-key"]);
            StringAssert.StartsWith("multipart/form-data; boundary=", first.Headers["content-type"]);
            StringAssert.DoesNotContain("\"", first.Headers["content-type"]);
        }

        [Test]
        public void EveryPropertyIsSentUnderItsRestName()
        {
            var server = Server();
            var background = Path.Combine(TempDir, "bg.png");
            File.WriteAllText(background, "background-bytes");
            Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest
            {
                ImageFileB64 = "aGVsbG8=", Size = "hd", Type = "product", TypeLevel = "2", Format = "zip", BgColor = "#81d4fa",
                BgImageUrl = "https://example.com/bg.jpg", BgImageFile = background, Channels = "alpha", Crop = true,
                CropMargin = "10px 5%", Scale = "80%", Position = "30% 70%", Roi = "0% 0% 50% 100%", AddShadow = false,
                ShadowType = "drop", ShadowOpacity = 40, Semitransparency = true, ImageUrl = "https://example.com/a.jpg",
                ExtraFields = new Dictionary<string, string> { { "future_field", "x" }, { "skipped", null } },
            }));
            var expected = new Dictionary<string, string>
            {
                { "image_url", "https://example.com/a.jpg" }, { "image_file_b64", "aGVsbG8=" }, { "size", "hd" }, { "type", "product" },
                { "type_level", "2" }, { "format", "zip" }, { "bg_color", "#81d4fa" }, { "bg_image_url", "https://example.com/bg.jpg" },
                { "channels", "alpha" }, { "crop", "true" }, { "crop_margin", "10px 5%" }, { "scale", "80%" }, { "position", "30% 70%" },
                { "roi", "0% 0% 50% 100%" }, { "add_shadow", "false" }, { "shadow_type", "drop" }, { "shadow_opacity", "40" },
                { "semitransparency", "true" }, { "future_field", "x" }, { "bg_image_file", "bg.png|background-bytes" },
            };
            CollectionAssert.AreEqual(expected, server.Requests[0].Form());
        }

        [Test]
        public void NullLeavesAFieldOut()
        {
            var server = Server();
            Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "https://example.com/a.jpg", Size = null }));
            CollectionAssert.AreEqual(new Dictionary<string, string> { { "image_url", "https://example.com/a.jpg" } }, server.Requests[0].Form());
        }

        [Test]
        public void APathBytesAndAStreamAreUploaded()
        {
            var server = Server();
            var client = Client(server);
            var bytes = new byte[] { 0xFF, 0xD8, 0xFF, 0x20, 0x6A, 0x00, 0x01 };
            var path = Path.Combine(TempDir, "holiday photo.jpg");
            File.WriteAllBytes(path, bytes);
            Run(client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = path }));
            Run(client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageBytes = bytes, ImageFileName = "b.jpg" }));
            var stream = new MemoryStream(Encoding.ASCII.GetBytes("skip|the photo"));
            stream.Position = 5;
            Run(client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageStream = stream }));
            Assert.IsTrue(stream.CanRead, "the caller's stream is left open");
            var latin1 = Encoding.GetEncoding("ISO-8859-1");
            var forms = server.Requests.Select(r => r.Form()).ToList();
            Assert.AreEqual("holiday photo.jpg|" + latin1.GetString(bytes), forms[0]["image_file"]);
            Assert.AreEqual("b.jpg|" + latin1.GetString(bytes), forms[1]["image_file"]);
            Assert.AreEqual("image_file|the photo", forms[2]["image_file"]);
        }

        [Test]
        public void AMissingFileFailsBeforeSending()
        {
            var server = Server();
            var error = Throws<FileNotFoundException>(() => Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = "/no/such/photo.jpg" }));
            StringAssert.Contains("/no/such/photo.jpg", error.Message);
            Assert.AreEqual(0, server.Requests.Count);
        }

        [Test]
        public void TheKeyAndAddressComeFromTheEnvironmentAndNoKeyIsAnErrorBeforeAnyRequest()
        {
            var server = Server(FakeServer.AccountReply());
            Environment.SetEnvironmentVariable("CLEARBG_API_KEY", "env-key");
            Environment.SetEnvironmentVariable("CLEARBG_BASE_URL", server.Url + "/");
            using (var client = new ClearBGClient())
            {
                Assert.AreEqual(server.Url, client.BaseUrl);
                Run(client.GetAccountAsync());
            }
            Assert.AreEqual("env-key", server.Requests[0].Headers["x-api-key"]);
            Environment.SetEnvironmentVariable("CLEARBG_API_KEY", null);
            StringAssert.Contains("CLEARBG_API_KEY", Assert.Throws<ClearBGException>(() => new ClearBGClient(null, server.Url)).Message);
            Assert.Throws<ClearBGException>(() => new ClearBGClient("  ", server.Url));
            Assert.Throws<ClearBGException>(() => new ClearBGClient("k", "ftp://x"));
            Assert.Throws<ArgumentOutOfRangeException>(() => new ClearBGClient(new ClearBGClientOptions { ApiKey = "k", MaxRetries = -1 }));
            Assert.AreEqual(1, server.Requests.Count);
        }

        [Test]
        public void AccountReadsTheDocumentedBody()
        {
            var server = Server(FakeServer.AccountReply("{\"data\":{\"attributes\":{\"credits\":{\"total\":50.5,\"subscription\":45.5,\"payg\":5,\"enterprise\":0},"
                + "\"api\":{\"free_calls\":7,\"sizes\":\"all\"}}}}"));
            var account = Run(Client(server).GetAccountAsync());
            Assert.AreEqual("GET", server.Requests[0].Method);
            Assert.AreEqual("/v1.0/account", server.Requests[0].Path);
            Assert.IsFalse(server.Requests[0].Headers.ContainsKey("idempotency-key"));
            Assert.AreEqual(new[] { 50.5m, 45.5m, 5m, 0m }, new[] { account.Credits.Total, account.Credits.Subscription, account.Credits.Payg, account.Credits.Enterprise });
            Assert.AreEqual(7, account.FreeCalls);
            Assert.AreEqual("all", account.Sizes);
            Assert.AreEqual("req-account", account.RequestId);
        }

        [Test]
        public void AnAccountBodyOfAnotherShapeIsAClearBGException()
        {
            var reply = new Reply { Body = Encoding.UTF8.GetBytes("<html>hi</html>") };
            reply.Headers["Content-Type"] = "text/html";
            StringAssert.Contains("unexpected shape", Throws<ClearBGException>(() => Client(Server(reply)).GetAccountAsync()).Message);
        }

        [Test]
        public void SaveWritesThePictureAndReturnsThePath()
        {
            var result = Run(Client(Server()).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "https://example.com/a.jpg" }));
            var path = Path.Combine(TempDir, "out.png");
            Assert.AreEqual(path, result.Save(path));
            CollectionAssert.AreEqual(FakeServer.Png1x1, File.ReadAllBytes(path));
        }
    }
}
