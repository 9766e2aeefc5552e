using System;
using System.Net;
using System.Net.Sockets;
using System.Text;
using NUnit.Framework;

namespace ClearBG.Tests
{
    /// <summary>The server's error answers as one class per status, with what the body and headers said.</summary>
    [TestFixture]
    public class ErrorsTests : TestBase
    {
        [TestCase(400, typeof(BadRequestException), "invalid_size")]
        [TestCase(401, typeof(AuthenticationException), "invalid_api_key")]
        [TestCase(402, typeof(InsufficientCreditsException), "insufficient_credits")]
        [TestCase(403, typeof(PermissionDeniedException), "ip_rate_limit_exceeded")]
        [TestCase(404, typeof(ApiException), "not_found")]
        [TestCase(409, typeof(ConflictException), "idempotency_result_evicted")]
        [TestCase(422, typeof(UnprocessableEntityException), "idempotency_key_reused")]
        public void EachStatusIsItsClassWithCodeTitleDetailAndRequestIdAndIsNotRetried(int status, Type type, string code)
        {
            var server = Server(FakeServer.Error(status, code, null, "A title", "What went wrong"));
            var error = Throws<ApiException>(() => Client(server).RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = "https://example.com/a.jpg" }));
            Assert.AreEqual(type, error.GetType());
            Assert.IsInstanceOf<ClearBGException>(error);
            Assert.AreEqual(status, error.Status);
            Assert.AreEqual(code, error.Code);
            Assert.AreEqual("A title", error.Title);
            Assert.AreEqual("What went wrong", error.Detail);
            Assert.AreEqual("req-" + status, error.RequestId);
            Assert.AreEqual(status + " " + code + ": What went wrong (request id req-" + status + ")", error.Message);
            Assert.AreEqual("req-" + status, error.Headers["x-request-id"]);
            StringAssert.Contains("\"code\":\"" + code + "\"", error.Body);
            Assert.AreEqual(1, server.Requests.Count, status + " is not retried");
        }

        [TestCase(500, typeof(InternalServerException))]
        [TestCase(502, typeof(InternalServerException))]
        [TestCase(504, typeof(InternalServerException))]
        [TestCase(507, typeof(InternalServerException))]
        [TestCase(503, typeof(ServiceUnavailableException))]
        public void ServerErrorsAreInternalServerExceptionsAnd503ServiceUnavailable(int status, Type type)
        {
            var error = Throws<ApiException>(() => Client(Server(FakeServer.Error(status, "boom", "0")), maxRetries: 0).GetAccountAsync());
            Assert.AreEqual(type, error.GetType());
            Assert.AreEqual(status, error.Status);
            Assert.AreEqual(TimeSpan.Zero, error.RetryAfter);
        }

        [Test]
        public void AProxyPageStillGivesTheStatusAndAReadableDetail()
        {
            var page = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>";
            var reply = new Reply { Status = 502, Body = Encoding.UTF8.GetBytes(page) };
            reply.Headers["Content-Type"] = "text/html";
            var error = Throws<InternalServerException>(() => Client(Server(reply), maxRetries: 0).GetAccountAsync());
            Assert.IsNull(error.Code);
            Assert.AreEqual("Bad Gateway", error.Title);
            Assert.AreEqual("HTTP 502 Bad Gateway without a ClearBG error body: 502 Bad Gateway nginx", error.Detail);
            Assert.AreEqual(page, error.Body);
        }

        [Test]
        public void NoAnswerIsAConnectionException()
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            using (var client = new ClearBGClient(new ClearBGClientOptions { ApiKey = "k", BaseUrl = "http://127.0.0.1:" + port, MaxRetries = 0 }))
            {
                var error = Throws<ApiConnectionException>(() => client.GetAccountAsync());
                StringAssert.Contains("127.0.0.1:" + port, error.Message);
                Assert.IsNotInstanceOf<ApiTimeoutException>(error);
            }
        }

        [Test]
        public void NoAnswerWithinTheTimeoutIsATimeoutException()
        {
            var late = FakeServer.AccountReply();
            late.Delay = TimeSpan.FromSeconds(3);
            var error = Throws<ApiTimeoutException>(() => Client(Server(late), TimeSpan.FromSeconds(0.5), 0).GetAccountAsync());
            Assert.IsInstanceOf<ApiConnectionException>(error);
        }
    }
}
