using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace ClearBG
{
    /// <summary>Settings of a <see cref="ClearBGClient"/> beyond the key and the address.</summary>
    public sealed class ClearBGClientOptions
    {
        /// <summary>Default: the CLEARBG_API_KEY environment variable.</summary>
        public string ApiKey { get; set; }
        /// <summary>Default: CLEARBG_BASE_URL, else https://api.clearbg.ai.</summary>
        public string BaseUrl { get; set; }
        /// <summary>The time one attempt may take: upload, the server's work and the answer (default 300 s).</summary>
        public TimeSpan? Timeout { get; set; }
        /// <summary>Retries of a failed call (default 2, so up to 3 attempts).</summary>
        public int? MaxRetries { get; set; }
        /// <summary>Your own HttpClient (proxies, certificates, handlers); its own Timeout should be infinite or longer than ours. Not disposed by the client.</summary>
        public HttpClient HttpClient { get; set; }
        /// <summary>Receives a line for every retry.</summary>
        public Action<string> Log { get; set; }
    }

    /// <summary>
    /// The ClearBG REST API: POST /v1.0/removebg and GET /v1.0/account. One client may serve many
    /// calls at once; make one and share it.
    /// </summary>
    public sealed class ClearBGClient : IDisposable
    {
        public const string DefaultBaseUrl = "https://api.clearbg.ai";
        public const int DefaultMaxRetries = 2;
        /// <summary>A 22 MB upload over a slow link plus a wait in the server's queue; the gateway allows 300 s.</summary>
        public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(300);
        public const string Version = "0.1.0";
        const string RemoveBgPath = "/v1.0/removebg";
        const string AccountPath = "/v1.0/account";
        static readonly int[] RetryStatuses = { 408, 429, 500, 502, 503, 504 };
        static readonly Random Jitter = new Random();

        readonly string _apiKey;
        readonly HttpClient _http;
        readonly bool _ownsHttp;
        readonly Action<string> _log;
        readonly object _gateLock = new object();
        DateTime _pausedUntilUtc = DateTime.MinValue;

        public string BaseUrl { get; }
        public TimeSpan Timeout { get; }
        public int MaxRetries { get; }

        /// <summary>The key (default: CLEARBG_API_KEY; none at all: a ClearBGException at once) and the
        /// server (default: CLEARBG_BASE_URL, else https://api.clearbg.ai).</summary>
        public ClearBGClient(string apiKey = null, string baseUrl = null)
            : this(new ClearBGClientOptions { ApiKey = apiKey, BaseUrl = baseUrl })
        {
        }

        public ClearBGClient(ClearBGClientOptions options)
        {
            if (options == null) throw new ArgumentNullException(nameof(options));
            var key = options.ApiKey ?? Environment.GetEnvironmentVariable("CLEARBG_API_KEY");
            if (string.IsNullOrWhiteSpace(key))
            {
                throw new ClearBGException("No API key: pass new ClearBGClient(apiKey, baseUrl) or set CLEARBG_API_KEY "
                    + "(keys come from your ClearBG dashboard, or `clearbg-admin create-key` on your own server).");
            }
            _apiKey = key.Trim();
            var url = !string.IsNullOrEmpty(options.BaseUrl) ? options.BaseUrl : Environment.GetEnvironmentVariable("CLEARBG_BASE_URL");
            BaseUrl = (string.IsNullOrEmpty(url) ? DefaultBaseUrl : url).Trim().TrimEnd('/');
            if (!BaseUrl.StartsWith("http://", StringComparison.OrdinalIgnoreCase) && !BaseUrl.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            {
                throw new ClearBGException("baseUrl must start with http:// or https://, got '" + BaseUrl + "'");
            }
            Timeout = options.Timeout ?? DefaultTimeout;
            if (Timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(options), "Timeout must be positive");
            MaxRetries = options.MaxRetries ?? DefaultMaxRetries;
            if (MaxRetries < 0) throw new ArgumentOutOfRangeException(nameof(options), "MaxRetries must be 0 or more");
            _log = options.Log;
            if (options.HttpClient != null)
            {
                _http = options.HttpClient;
            }
            else
            {
                // Redirects are not followed (an API answer is never one); each attempt has its own deadline.
                _http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
                _ownsHttp = true;
            }
        }

        /// <summary>POST /v1.0/removebg: the photo with its background removed, and what the server said.</summary>
        /// <exception cref="ApiException">an error answer (a subclass per status)</exception>
        /// <exception cref="ApiConnectionException">no answer came (<see cref="ApiTimeoutException"/>: not in time)</exception>
        public async Task<RemoveBackgroundResult> RemoveBackgroundAsync(RemoveBackgroundRequest request,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null) throw new ArgumentNullException(nameof(request));
            var fields = request.TextFields();
            var files = new List<Upload>();
            if (request.ImageFile != null) files.Add(Upload.FromPath("image_file", request.ImageFile));
            if (request.ImageStream != null) files.Add(Upload.FromStream("image_file", request.ImageStream, request.ImageFileName));
            if (request.ImageBytes != null) files.Add(Upload.FromBytes("image_file", request.ImageBytes, request.ImageFileName));
            if (request.BgImageFile != null) files.Add(Upload.FromPath("bg_image_file", request.BgImageFile));
            var key = request.IdempotencyKey ?? Guid.NewGuid().ToString();
            var rewindable = files.All(f => f.Rewindable);
            var answer = await WithRetriesAsync("POST " + RemoveBgPath + " [" + key + "]", request.MaxRetries, rewindable, cancellationToken,
                () =>
                {
                    var message = new HttpRequestMessage(HttpMethod.Post, BaseUrl + RemoveBgPath);
                    message.Headers.TryAddWithoutValidation("Idempotency-Key", key);
                    message.Content = Multipart(fields, files);
                    return message;
                }, request.Timeout).ConfigureAwait(false);
            return new RemoveBackgroundResult(answer.Body, answer.Headers, key);
        }

        /// <summary>GET /v1.0/account: credits (total, subscription, payg, enterprise) and free calls.</summary>
        public async Task<Account> GetAccountAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            var answer = await WithRetriesAsync("GET " + AccountPath, null, true, cancellationToken,
                () => new HttpRequestMessage(HttpMethod.Get, BaseUrl + AccountPath), null).ConfigureAwait(false);
            var text = Encoding.UTF8.GetString(answer.Body);
            var root = Json.Parse(text);
            var credits = root == null ? null : Json.Path(root, "data", "attributes", "credits");
            if (credits == null)
            {
                throw new ClearBGException("GET " + AccountPath + " answered a body of an unexpected shape: "
                    + (text.Length > 200 ? text.Substring(0, 200) : text));
            }
            Func<string, decimal> credit = name =>
            {
                var found = Json.Path(credits, name);
                return found == null ? 0m : RemoveBackgroundResult.Number(found.Value);
            };
            var freeCalls = Json.Path(root, "data", "attributes", "api", "free_calls");
            var sizes = Json.Path(root, "data", "attributes", "api", "sizes");
            string requestId;
            answer.Headers.TryGetValue("x-request-id", out requestId);
            return new Account(
                new Credits(credit("total"), credit("subscription"), credit("payg"), credit("enterprise")),
                freeCalls == null ? 0 : (int)RemoveBackgroundResult.Number(freeCalls.Value),
                sizes == null ? "" : sizes.Value,
                requestId);
        }

        /// <summary>How long a Retry-After value asks to wait (seconds, or an HTTP date); null when absent or unreadable.</summary>
        public static TimeSpan? ParseRetryAfter(string value)
        {
            if (string.IsNullOrWhiteSpace(value)) return null;
            var text = value.Trim();
            double seconds;
            if (System.Text.RegularExpressions.Regex.IsMatch(text, @"^\d+(\.\d+)?$")
                && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out seconds))
            {
                return TimeSpan.FromSeconds(seconds);
            }
            DateTimeOffset when;
            if (DateTimeOffset.TryParseExact(text, "r", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out when))
            {
                var left = when - DateTimeOffset.UtcNow;
                return left > TimeSpan.Zero ? left : TimeSpan.Zero;
            }
            return null;
        }

        /// <summary>The wait before retry number attempt + 1 when the server named none: 0.5 s * 2^n, at most 8 s, less up to a quarter at random.</summary>
        public static TimeSpan Backoff(int attempt)
        {
            double jitter;
            lock (Jitter) jitter = Jitter.NextDouble();
            var seconds = Math.Min(8.0, 0.5 * Math.Pow(2, attempt));
            return TimeSpan.FromSeconds(seconds * (1 - 0.25 * jitter));
        }

        /// <summary>Whether a failed attempt may succeed later: 408, 409 idempotency_in_flight, 429, 500, 502, 503, 504, and no answer.</summary>
        public static bool IsRetryable(ClearBGException error)
        {
            if (error is ApiConnectionException) return true;
            var api = error as ApiException;
            if (api == null) return false;
            return RetryStatuses.Contains(api.Status) || (api.Status == 409 && api.Code == "idempotency_in_flight");
        }

        public void Dispose()
        {
            if (_ownsHttp) _http.Dispose();
        }

        sealed class Answer
        {
            public byte[] Body;
            public IReadOnlyDictionary<string, string> Headers;
        }

        async Task<Answer> WithRetriesAsync(string label, int? maxRetries, bool rewindable, CancellationToken cancellationToken,
            Func<HttpRequestMessage> makeRequest, TimeSpan? timeout)
        {
            var retries = maxRetries ?? MaxRetries;
            for (var attempt = 0; ; attempt++)
            {
                await WaitForPauseAsync(cancellationToken).ConfigureAwait(false);
                ClearBGException error;
                try
                {
                    var answer = await SendAsync(makeRequest, timeout ?? Timeout, cancellationToken).ConfigureAwait(false);
                    return answer;
                }
                catch (ApiException e)
                {
                    error = e;
                }
                catch (ApiConnectionException e)
                {
                    error = e;
                }
                if (attempt >= retries || !IsRetryable(error)) throw error;
                if (!rewindable)
                {
                    Log(label + ": not retrying (" + error.Message + "): the upload was a stream that cannot be rewound");
                    throw error;
                }
                var api = error as ApiException;
                var retryAfter = api != null ? api.RetryAfter : null;
                var delay = retryAfter ?? Backoff(attempt);
                Log(string.Format(CultureInfo.InvariantCulture, "{0}: retrying in {1:0.000} s after {2}", label, delay.TotalSeconds, error.GetType().Name));
                if (retryAfter.HasValue && (api.Status == 429 || api.Status == 503))
                {
                    // Every call of this client waits: the limit is the key's, not the call's.
                    lock (_gateLock)
                    {
                        var until = DateTime.UtcNow + delay;
                        if (until > _pausedUntilUtc) _pausedUntilUtc = until;
                    }
                }
                else
                {
                    await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        async Task WaitForPauseAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                TimeSpan left;
                lock (_gateLock) left = _pausedUntilUtc - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) return;
                await Task.Delay(left, cancellationToken).ConfigureAwait(false);
            }
        }

        async Task<Answer> SendAsync(Func<HttpRequestMessage> makeRequest, TimeSpan timeout, CancellationToken cancellationToken)
        {
            using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            using (var request = makeRequest())
            {
                deadline.CancelAfter(timeout);
                request.Headers.TryAddWithoutValidation("X-Api-Key", _apiKey);
                request.Headers.TryAddWithoutValidation("User-Agent", "clearbg-dotnet/" + Version);
                var url = request.RequestUri;
                try
                {
                    using (var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token).ConfigureAwait(false))
                    {
                        var body = await response.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
                        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                        foreach (var header in response.Headers.Concat(response.Content.Headers))
                        {
                            headers[header.Key.ToLowerInvariant()] = string.Join(", ", header.Value);
                        }
                        var status = (int)response.StatusCode;
                        if (status >= 200 && status < 300) return new Answer { Body = body, Headers = headers };
                        string retryAfter;
                        headers.TryGetValue("retry-after", out retryAfter);
                        throw ApiException.FromResponse(status, response.ReasonPhrase, headers, Encoding.UTF8.GetString(body), ParseRetryAfter(retryAfter));
                    }
                }
                catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new ApiTimeoutException("No answer within the timeout (" + timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture) + " s): " + url, e);
                }
                catch (HttpRequestException e)
                {
                    throw new ApiConnectionException("Connection error (" + Innermost(e).Message + "): " + url, e);
                }
                catch (IOException e)
                {
                    throw new ApiConnectionException("Connection error (" + e.Message + "): " + url, e);
                }
            }
        }

        static Exception Innermost(Exception e)
        {
            while (e.InnerException != null) e = e.InnerException;
            return e;
        }

        void Log(string line)
        {
            if (_log != null) _log("clearbg: " + line);
        }

        static HttpContent Multipart(List<KeyValuePair<string, string>> fields, List<Upload> files)
        {
            var boundary = Guid.NewGuid().ToString("N");
            var content = new MultipartFormDataContent(boundary);
            // .NET quotes the boundary in Content-Type; some servers' parsers do not unquote it.
            var parameter = content.Headers.ContentType.Parameters.First(p => p.Name == "boundary");
            parameter.Value = boundary;
            foreach (var field in fields)
            {
                var part = new ByteArrayContent(Encoding.UTF8.GetBytes(field.Value));
                part.Headers.ContentDisposition = new ContentDispositionHeaderValue("form-data") { Name = Quote(field.Key) };
                content.Add(part);
            }
            foreach (var file in files)
            {
                var part = file.Content();
                part.Headers.ContentDisposition = new ContentDispositionHeaderValue("form-data") { Name = Quote(file.Field), FileName = Quote(file.FileName) };
                part.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                content.Add(part);
            }
            return content;
        }

        static string Quote(string value)
        {
            // As browsers write Content-Disposition values.
            return "\"" + value.Replace("\\", "\\\\").Replace("\"", "%22").Replace("\r", "%0D").Replace("\n", "%0A") + "\"";
        }

        /// <summary>One file to upload, as content for each attempt.</summary>
        sealed class Upload
        {
            public string Field;
            public string FileName;
            string _path;
            byte[] _bytes;
            Stream _stream;
            long? _start;

            public bool Rewindable { get { return _stream == null || _start.HasValue; } }

            public static Upload FromPath(string field, string path)
            {
                if (!File.Exists(path)) throw new FileNotFoundException(field + ": no such file: " + path, path);
                return new Upload { Field = field, FileName = System.IO.Path.GetFileName(path), _path = path };
            }

            public static Upload FromBytes(string field, byte[] bytes, string name)
            {
                return new Upload { Field = field, FileName = name ?? field, _bytes = bytes };
            }

            public static Upload FromStream(string field, Stream stream, string name)
            {
                var file = stream as FileStream;
                var fileName = name ?? (file != null ? System.IO.Path.GetFileName(file.Name) : field);
                return new Upload { Field = field, FileName = fileName, _stream = stream, _start = stream.CanSeek ? stream.Position : (long?)null };
            }

            public HttpContent Content()
            {
                if (_path != null) return new StreamContent(new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 262144, true));
                if (_bytes != null) return new ByteArrayContent(_bytes);
                if (_start.HasValue) _stream.Position = _start.Value;
                return new StreamContent(new LeaveOpenStream(_stream));
            }
        }

        /// <summary>The caller's stream, read through but never closed by the request.</summary>
        sealed class LeaveOpenStream : Stream
        {
            readonly Stream _inner;
            public LeaveOpenStream(Stream inner) { _inner = inner; }
            public override bool CanRead { get { return _inner.CanRead; } }
            public override bool CanSeek { get { return _inner.CanSeek; } }
            public override bool CanWrite { get { return false; } }
            public override long Length { get { return _inner.Length; } }
            public override long Position { get { return _inner.Position; } set { _inner.Position = value; } }
            public override void Flush() { }
            public override int Read(byte[] buffer, int offset, int count) { return _inner.Read(buffer, offset, count); }
            public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            {
                return _inner.ReadAsync(buffer, offset, count, cancellationToken);
            }
            public override long Seek(long offset, SeekOrigin origin) { return _inner.Seek(offset, origin); }
            public override void SetLength(long value) { throw new NotSupportedException(); }
            public override void Write(byte[] buffer, int offset, int count) { throw new NotSupportedException(); }
        }
    }
}
