using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using NUnit.Framework;

namespace ClearBG.Tests
{
    /// <summary>Which answers are retried, how long the client waits, and that every attempt of one call carries the same Idempotency-Key.</summary>
    [TestFixture]
    public class RetriesTests : TestBase
    {
        static double Seconds(Recorded earlier, Recorded later)
        {
            return (later.At - earlier.At).TotalSeconds;
        }

        [Test]
        public void A429IsRetriedAfterItsRetryAfterWithTheSameIdempotencyKey()
        {
            var server = Server(FakeServer.Error(429, "rate_limit_exceeded", "1"), FakeServer.Ok());
            var path = Path.Combine(TempDir, "photo.jpg");
            File.WriteAllText(path, "the photo");
            var result = Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = path, Size = "small" }));
            var first = server.Requests[0];
            var second = server.Requests[1];
            Assert.GreaterOrEqual(Seconds(first, second), 0.99);
            Assert.AreEqual(first.Headers["idempotency-key"], second.Headers["idempotency-key"]);
            Assert.AreEqual(result.IdempotencyKey, second.Headers["idempotency-key"]);
            Assert.AreEqual("photo.jpg|the photo", second.Form()["image_file"], "the file is sent whole again");
            Assert.AreEqual("small", second.Form()["size"]);
        }

        [Test]
        public void RetryAfterAsAnHttpDateAndA503()
        {
            var later = DateTimeOffset.UtcNow.AddSeconds(2).ToString("r");
            var server = Server(FakeServer.Error(503, "overloaded", later), FakeServer.Ok());
            Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "https://example.com/a.jpg" }));
            Assert.AreEqual(2, server.Requests.Count);
            Assert.GreaterOrEqual(Seconds(server.Requests[0], server.Requests[1]), 0.9);
            Assert.AreEqual(30, ClearBGClient.ParseRetryAfter(DateTimeOffset.UtcNow.AddSeconds(30).ToString("r")).Value.TotalSeconds, 1.1);
            Assert.AreEqual(TimeSpan.Zero, ClearBGClient.ParseRetryAfter(DateTimeOffset.UtcNow.AddSeconds(-30).ToString("r")));
            Assert.AreEqual(TimeSpan.FromSeconds(2.5), ClearBGClient.ParseRetryAfter(" 2.5 "));
            Assert.IsNull(ClearBGClient.ParseRetryAfter("soon"));
            Assert.IsNull(ClearBGClient.ParseRetryAfter(null));
        }

        [TestCase(408)]
        [TestCase(500)]
        [TestCase(502)]
        [TestCase(504)]
        public void RetriedStatuses(int status)
        {
            var server = Server(FakeServer.Error(status, "x", "0"), FakeServer.AccountReply());
            Run(Client(server).GetAccountAsync());
            Assert.AreEqual(2, server.Requests.Count);
        }

        [Test]
        public void The409ThatIsRetriedAndTheOneThatIsNot()
        {
            var server = Server(FakeServer.Error(409, "idempotency_in_flight", "0"), FakeServer.Ok());
            Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "u" }));
            Assert.AreEqual(2, server.Requests.Count);
            server = Server(FakeServer.Error(409, "idempotency_result_evicted"));
            Throws<ConflictException>(() => Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "u" }));
            Assert.AreEqual(1, server.Requests.Count);
        }

        [Test]
        public void WithoutRetryAfterTheWaitIsAnExponentialBackoff()
        {
            var server = Server(FakeServer.Error(500, "internal"), FakeServer.Error(500, "internal"), FakeServer.AccountReply());
            Run(Client(server).GetAccountAsync());
            var requests = server.Requests;
            Assert.GreaterOrEqual(Seconds(requests[0], requests[1]), 0.37); // 0.5 s less up to a quarter
            Assert.GreaterOrEqual(Seconds(requests[1], requests[2]), 0.74); // 1 s less up to a quarter
            for (var i = 0; i < 20; i++)
            {
                Assert.LessOrEqual(ClearBGClient.Backoff(0).TotalSeconds, 0.5);
                Assert.LessOrEqual(ClearBGClient.Backoff(10).TotalSeconds, 8.0);
                Assert.GreaterOrEqual(ClearBGClient.Backoff(10).TotalSeconds, 6.0);
            }
        }

        [Test]
        public void RetriesStopAfterMaxRetriesAndThrowTheLastAnswer()
        {
            var server = Server(FakeServer.Error(429, "rate_limit_exceeded", "0"));
            var error = Throws<RateLimitException>(() => Client(server, maxRetries: 3).GetAccountAsync());
            Assert.AreEqual(4, server.Requests.Count);
            Assert.AreEqual(TimeSpan.Zero, error.RetryAfter);
            server = Server(FakeServer.Error(429, "rate_limit_exceeded", "0"));
            Throws<RateLimitException>(() => Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "u", MaxRetries = 0 }));
            Assert.AreEqual(1, server.Requests.Count);
        }

        [Test]
        public void AConnectionResetIsRetriedWithTheSameKey()
        {
            var server = Server(new Reply { Reset = true }, FakeServer.Ok());
            Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageBytes = new byte[] { 1, 2, 3 } }));
            Assert.AreEqual(2, server.Requests.Count);
            Assert.AreEqual(server.Requests[0].Headers["idempotency-key"], server.Requests[1].Headers["idempotency-key"]);
            server = Server(new Reply { Reset = true });
            Throws<ApiConnectionException>(() => Client(server, maxRetries: 1).GetAccountAsync());
            Assert.AreEqual(2, server.Requests.Count);
        }

        [Test]
        public void YourOwnIdempotencyKeyIsSentOnEveryAttempt()
        {
            var server = Server(FakeServer.Error(503, "overloaded", "0"), FakeServer.Ok());
            var result = Run(Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "u", IdempotencyKey = "order-1042-photo-3" }));
            CollectionAssert.AreEqual(new[] { "order-1042-photo-3", "order-1042-photo-3" }, server.Requests.Select(r => r.Headers["idempotency-key"]).ToArray());
            Assert.AreEqual("order-1042-photo-3", result.IdempotencyKey);
        }

        [Test]
        public void AStreamThatCannotBeRewoundIsSentOnce()
        {
            var server = Server(FakeServer.Error(503, "overloaded", "0"), FakeServer.Ok());
            var stream = new ForwardOnly(Encoding.ASCII.GetBytes("piped photo"));
            Throws<ServiceUnavailableException>(() => Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageStream = stream }));
            Assert.AreEqual(1, server.Requests.Count);
            Assert.AreEqual("image_file|piped photo", server.Requests[0].Form()["image_file"]);
        }

        [Test]
        public void ARetryAfterPausesEveryCallOfTheClient()
        {
            var server = Server(FakeServer.Error(429, "rate_limit_exceeded", "1"), FakeServer.AccountReply());
            var client = Client(server);
            var first = client.GetAccountAsync();
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (server.Requests.Count == 0 && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(20);
            System.Threading.Thread.Sleep(200); // the 429 has been answered and the pause set
            Run(client.GetAccountAsync());
            Run(first);
            var requests = server.Requests;
            Assert.AreEqual(3, requests.Count);
            Assert.IsTrue(requests.Skip(1).All(r => Seconds(requests[0], r) >= 0.95), "nothing was sent during the Retry-After");
        }

        [Test]
        public void RetriesAreLogged()
        {
            var lines = new List<string>();
            var server = Server(FakeServer.Error(503, "overloaded", "0"), FakeServer.Ok());
            Run(Client(server, log: lines.Add).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "u", IdempotencyKey = "k-1" }));
            CollectionAssert.AreEqual(new[] { "clearbg: POST /v1.0/removebg [k-1]: retrying in 0.000 s after ServiceUnavailableException" }, lines);
        }

        /// <summary>A stream that cannot seek, like a pipe.</summary>
        sealed class ForwardOnly : MemoryStream
        {
            public ForwardOnly(byte[] bytes) : base(bytes) { }
            public override bool CanSeek { get { return false; } }
            public override long Length { get { throw new NotSupportedException(); } }
            public override long Position { get { throw new NotSupportedException(); } set { throw new NotSupportedException(); } }
        }
    }
}
