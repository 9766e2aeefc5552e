using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;

namespace ClearBG
{
    /// <summary>Every failure the SDK throws (also: no API key configured).</summary>
    public class ClearBGException : Exception
    {
        public ClearBGException(string message) : base(message) { }
        public ClearBGException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>
    /// The server answered with an error status: one subclass per status, with what the body and
    /// headers said.
    /// </summary>
    public class ApiException : ClearBGException
    {
        /// <summary>The HTTP status, e.g. 402.</summary>
        public int Status { get; }
        /// <summary>The machine-readable reason, e.g. <c>insufficient_credits</c>; null when the body had none (a proxy's page).</summary>
        public string Code { get; }
        public string Title { get; }
        public string Detail { get; }
        /// <summary>The gateway's X-Request-Id: quote it when asking for help.</summary>
        public string RequestId { get; }
        /// <summary>How long the server asked to wait (Retry-After), when it said.</summary>
        public TimeSpan? RetryAfter { get; }
        /// <summary>Every answer header, lower-case names.</summary>
        public IReadOnlyDictionary<string, string> Headers { get; }
        /// <summary>The answer's body as text.</summary>
        public string Body { get; }

        public ApiException(int status, string code, string title, string detail, string requestId,
            TimeSpan? retryAfter, IReadOnlyDictionary<string, string> headers, string body)
            : base(status + " " + (code ?? title) + ": " + detail + (requestId != null ? " (request id " + requestId + ")" : ""))
        {
            Status = status;
            Code = code;
            Title = title;
            Detail = detail;
            RequestId = requestId;
            RetryAfter = retryAfter;
            Headers = headers;
            Body = body;
        }

        /// <summary>The exception for an answer: the class for its status, the fields from the body
        /// <c>{"errors":[{"title","code","detail"}]}</c> when it has that shape.</summary>
        internal static ApiException FromResponse(int status, string reason, IReadOnlyDictionary<string, string> headers,
            string body, TimeSpan? retryAfter)
        {
            var title = string.IsNullOrEmpty(reason) ? "HTTP " + status : reason;
            string code = null, detail;
            var entry = Json.Parse(body);
            var first = entry == null ? null : Json.Path(entry, "errors", "item");
            var foundCode = first == null ? null : Json.Path(first, "code");
            if (foundCode != null && Json.IsString(foundCode))
            {
                code = foundCode.Value;
                var foundTitle = Json.Path(first, "title");
                if (foundTitle != null && foundTitle.Value != "") title = foundTitle.Value;
                var foundDetail = Json.Path(first, "detail");
                detail = foundDetail != null && foundDetail.Value != "" ? foundDetail.Value : title;
            }
            else
            {
                // Not the API's JSON: a proxy's or load balancer's page, reported with its status.
                var snippet = Regex.Replace(Regex.Replace(body ?? "", "<[^>]*>", " "), @"\s+", " ").Trim();
                if (snippet.Length > 200) snippet = snippet.Substring(0, 200);
                detail = "HTTP " + status + " " + title + " without a ClearBG error body" + (snippet != "" ? ": " + snippet : "");
            }
            string requestId;
            headers.TryGetValue("x-request-id", out requestId);
            return Create(status, code, title, detail, requestId, retryAfter, headers, body);
        }

        static ApiException Create(int status, string code, string title, string detail, string requestId,
            TimeSpan? retryAfter, IReadOnlyDictionary<string, string> headers, string body)
        {
            switch (status)
            {
                case 400: return new BadRequestException(status, code, title, detail, requestId, retryAfter, headers, body);
                case 401: return new AuthenticationException(status, code, title, detail, requestId, retryAfter, headers, body);
                case 402: return new InsufficientCreditsException(status, code, title, detail, requestId, retryAfter, headers, body);
                case 403: return new PermissionDeniedException(status, code, title, detail, requestId, retryAfter, headers, body);
                case 409: return new ConflictException(status, code, title, detail, requestId, retryAfter, headers, body);
                case 422: return new UnprocessableEntityException(status, code, title, detail, requestId, retryAfter, headers, body);
                case 429: return new RateLimitException(status, code, title, detail, requestId, retryAfter, headers, body);
                case 503: return new ServiceUnavailableException(status, code, title, detail, requestId, retryAfter, headers, body);
                default:
                    return status >= 500
                        ? new InternalServerException(status, code, title, detail, requestId, retryAfter, headers, body)
                        : new ApiException(status, code, title, detail, requestId, retryAfter, headers, body);
            }
        }
    }

    /// <summary>400: a parameter or the image; Code names which (invalid_size, invalid_file_type, ...).</summary>
    public class BadRequestException : ApiException
    {
        public BadRequestException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>401: missing or invalid API key (missing_api_key, invalid_api_key).</summary>
    public class AuthenticationException : ApiException
    {
        public AuthenticationException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>402: no credits (insufficient_credits) or no free previews left (insufficient_free_calls).</summary>
    public class InsufficientCreditsException : ApiException
    {
        public InsufficientCreditsException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>403: e.g. too many free previews from this IP address (ip_rate_limit_exceeded).</summary>
    public class PermissionDeniedException : ApiException
    {
        public PermissionDeniedException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>409: idempotency_in_flight (retried), idempotency_result_evicted.</summary>
    public class ConflictException : ApiException
    {
        public ConflictException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>422: idempotency_key_reused (the key was sent before with other parameters).</summary>
    public class UnprocessableEntityException : ApiException
    {
        public UnprocessableEntityException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>429: the key's megapixel-images per minute; RetryAfter says when to try again.</summary>
    public class RateLimitException : ApiException
    {
        public RateLimitException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>500 and other 5xx answers (503 aside): nothing was charged.</summary>
    public class InternalServerException : ApiException
    {
        public InternalServerException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>503: overloaded or shutting down; RetryAfter says when to try again.</summary>
    public class ServiceUnavailableException : ApiException
    {
        public ServiceUnavailableException(int status, string code, string title, string detail, string requestId, TimeSpan? retryAfter,
            IReadOnlyDictionary<string, string> headers, string body)
            : base(status, code, title, detail, requestId, retryAfter, headers, body) { }
    }

    /// <summary>No answer came: the connection failed, was reset or closed early.</summary>
    public class ApiConnectionException : ClearBGException
    {
        public ApiConnectionException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>No answer within the client's timeout.</summary>
    public class ApiTimeoutException : ApiConnectionException
    {
        public ApiTimeoutException(string message, Exception inner) : base(message, inner) { }
    }
}
