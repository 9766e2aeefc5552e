using System;
using System.Collections.Generic;
using System.IO;
using System.Threading.Tasks;
using NUnit.Framework;

namespace ClearBG.Tests
{
    /// <summary>Each test starts its own fake servers; a developer's own CLEARBG_* settings never leak in.</summary>
    public abstract class TestBase
    {
        readonly List<IDisposable> _owned = new List<IDisposable>();
        readonly Dictionary<string, string> _savedEnv = new Dictionary<string, string>();
        protected string TempDir;

        [SetUp]
        public void SetUpEnvironment()
        {
            foreach (var name in new[] { "CLEARBG_API_KEY", "CLEARBG_BASE_URL" })
            {
                _savedEnv[name] = Environment.GetEnvironmentVariable(name);
                Environment.SetEnvironmentVariable(name, null);
            }
            TempDir = Path.Combine(Path.GetTempPath(), "clearbg-dotnet-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(TempDir);
        }

        [TearDown]
        public void TearDownEnvironment()
        {
            foreach (var owned in _owned) owned.Dispose();
            _owned.Clear();
            foreach (var saved in _savedEnv) Environment.SetEnvironmentVariable(saved.Key, saved.Value);
            Directory.Delete(TempDir, true);
        }

        protected FakeServer Server(params Reply[] script)
        {
            var server = new FakeServer(script);
            _owned.Add(server);
            return server;
        }

        protected ClearBGClient Client(FakeServer server, TimeSpan? timeout = null, int? maxRetries = null, Action<string> log = null)
        {
            var client = new ClearBGClient(new ClearBGClientOptions { ApiKey = "test-key", BaseUrl = server.Url, Timeout = timeout, MaxRetries = maxRetries, Log = log });
            _owned.Add(client);
            return client;
        }

        /// <summary>The task's result (NUnit 2.6 runs synchronous tests).</summary>
        protected static T Run<T>(Task<T> task)
        {
            return task.GetAwaiter().GetResult();
        }

        /// <summary>The exception the call threw, of exactly this class or a subclass.</summary>
        protected static TException Throws<TException>(Func<Task> call) where TException : Exception
        {
            try
            {
                call().GetAwaiter().GetResult();
            }
            catch (TException e)
            {
                return e;
            }
            catch (Exception e)
            {
                Assert.Fail("expected " + typeof(TException).Name + ", got " + e.GetType().Name + ": " + e.Message);
            }
            Assert.Fail("expected " + typeof(TException).Name + ", nothing was thrown");
            return null;
        }
    }
}
