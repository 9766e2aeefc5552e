using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace ClearBG
{
    /// <summary>Where the subject is in the result, in output pixels (X-Foreground-*).</summary>
    public sealed class Foreground
    {
        public int Top { get; }
        public int Left { get; }
        public int Width { get; }
        public int Height { get; }

        public Foreground(int top, int left, int width, int height)
        {
            Top = top;
            Left = left;
            Width = width;
            Height = height;
        }

        public override string ToString()
        {
            return "Foreground(top " + Top + ", left " + Left + ", " + Width + "x" + Height + ")";
        }
    }

    /// <summary>The key's megapixel-images per minute (X-RateLimit-*); Reset in Unix seconds.</summary>
    public sealed class RateLimit
    {
        public int? Limit { get; }
        public int? Remaining { get; }
        public long? Reset { get; }

        public RateLimit(int? limit, int? remaining, long? reset)
        {
            Limit = limit;
            Remaining = remaining;
            Reset = reset;
        }
    }

    /// <summary>An account's credits (GET /v1.0/account).</summary>
    public sealed class Credits
    {
        public decimal Total { get; }
        public decimal Subscription { get; }
        public decimal Payg { get; }
        public decimal Enterprise { get; }

        public Credits(decimal total, decimal subscription, decimal payg, decimal enterprise)
        {
            Total = total;
            Subscription = subscription;
            Payg = payg;
            Enterprise = enterprise;
        }
    }

    /// <summary>GET /v1.0/account: the credits, this month's free preview calls left, the sizes allowed.</summary>
    public sealed class Account
    {
        public Credits Credits { get; }
        public int FreeCalls { get; }
        public string Sizes { get; }
        public string RequestId { get; }

        public Account(Credits credits, int freeCalls, string sizes, string requestId)
        {
            Credits = credits;
            FreeCalls = freeCalls;
            Sizes = sizes;
            RequestId = requestId;
        }
    }

    /// <summary>
    /// The cut-out: <see cref="Data"/> is the file the server sent (PNG, JPG, WebP or ZIP, as
    /// <see cref="ContentType"/> says), with every figure the answer's headers gave. A header the
    /// server did not send is null (0 for the credits).
    /// </summary>
    public sealed class RemoveBackgroundResult
    {
        /// <summary>The picture's bytes.</summary>
        public byte[] Data { get; }
        public string ContentType { get; }
        /// <summary>X-Width, X-Height: the output's size in pixels.</summary>
        public int? Width { get; }
        public int? Height { get; }
        /// <summary>X-Type (person, product, animal, car, other, or e.g. animal-dog with TypeLevel "2"); null with TypeLevel "none".</summary>
        public string Type { get; }
        /// <summary>X-Credits-Charged: 0 for a preview.</summary>
        public decimal CreditsCharged { get; }
        /// <summary>X-Credits-Remaining: the balance after this call.</summary>
        public decimal CreditsRemaining { get; }
        public Foreground Foreground { get; }
        public RateLimit RateLimit { get; }
        /// <summary>X-Request-Id: quote it when asking for help.</summary>
        public string RequestId { get; }
        /// <summary>True when the server answered from an earlier call with the same Idempotency-Key (charged once, then).</summary>
        public bool Replayed { get; }
        /// <summary>The Idempotency-Key this call was sent with.</summary>
        public string IdempotencyKey { get; }
        /// <summary>Every answer header, lower-case names.</summary>
        public IReadOnlyDictionary<string, string> Headers { get; }

        internal RemoveBackgroundResult(byte[] data, IReadOnlyDictionary<string, string> headers, string idempotencyKey)
        {
            Data = data;
            Headers = headers;
            IdempotencyKey = idempotencyKey;
            ContentType = Get(headers, "content-type") ?? "application/octet-stream";
            Width = Int(Get(headers, "x-width"));
            Height = Int(Get(headers, "x-height"));
            Type = Get(headers, "x-type");
            CreditsCharged = Number(Get(headers, "x-credits-charged"));
            CreditsRemaining = Number(Get(headers, "x-credits-remaining"));
            if (headers.ContainsKey("x-foreground-top"))
            {
                Foreground = new Foreground(Int(Get(headers, "x-foreground-top")) ?? 0, Int(Get(headers, "x-foreground-left")) ?? 0,
                    Int(Get(headers, "x-foreground-width")) ?? 0, Int(Get(headers, "x-foreground-height")) ?? 0);
            }
            if (headers.ContainsKey("x-ratelimit-limit"))
            {
                long reset;
                RateLimit = new RateLimit(Int(Get(headers, "x-ratelimit-limit")), Int(Get(headers, "x-ratelimit-remaining")),
                    long.TryParse(Get(headers, "x-ratelimit-reset"), NumberStyles.Integer, CultureInfo.InvariantCulture, out reset) ? reset : (long?)null);
            }
            RequestId = Get(headers, "x-request-id");
            Replayed = string.Equals(Get(headers, "idempotent-replayed"), "true", StringComparison.OrdinalIgnoreCase);
        }

        /// <summary>Writes the picture to <paramref name="path"/> (its folder must exist) and returns the path.</summary>
        public string Save(string path)
        {
            File.WriteAllBytes(path, Data);
            return path;
        }

        public override string ToString()
        {
            return "RemoveBackgroundResult(" + ContentType + ", " + Data.Length + " bytes, " + Width + "x" + Height + ", type " + Type
                + ", credits charged " + CreditsCharged + ", remaining " + CreditsRemaining + ", request id " + RequestId + ")";
        }

        static string Get(IReadOnlyDictionary<string, string> headers, string name)
        {
            string value;
            return headers.TryGetValue(name, out value) ? value : null;
        }

        static int? Int(string value)
        {
            int parsed;
            return int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out parsed) ? parsed : (int?)null;
        }

        internal static decimal Number(string value)
        {
            decimal parsed;
            return decimal.TryParse(value, NumberStyles.Number, CultureInfo.InvariantCulture, out parsed) ? parsed : 0m;
        }
    }
}
