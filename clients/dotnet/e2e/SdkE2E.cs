// End to end: the compiled library against the real service (Envoy + gRPC server + model), started
// by tests/clients/rest_sdks/ (pytest), which compiles this program against ClearBG.dll, runs it with
// Mono and sets:
//   CLEARBG_BASE_URL, CLEARBG_API_KEY  the stack (through a recording proxy) and an account with credits
//   CLEARBG_E2E_POOR_KEY               an account with nothing to pay with
//   CLEARBG_E2E_LIMITED_KEY            an account limited to a few images a minute
//   CLEARBG_E2E_PHOTO                  a real photo (read in place)
//   CLEARBG_E2E_IMAGE_URL              the same photo on a local HTTP server the stack may fetch from
//   CLEARBG_E2E_OUT                    where each answer is saved, with the fields the SDK read from it
// pytest then decodes the pictures and compares every field with the headers the proxy saw.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using ClearBG;

static class SdkE2E
{
    static string Out;
    static string Photo;

    static string Env(string name)
    {
        var value = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrEmpty(value)) throw new InvalidOperationException(name + " is not set");
        return value;
    }

    /// <summary>A small JSON writer for the records (strings, numbers, booleans, null, nested dictionaries).</summary>
    static string ToJson(object value)
    {
        if (value == null) return "null";
        if (value is string) return "\"" + ((string)value).Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        if (value is bool) return (bool)value ? "true" : "false";
        var record = value as IDictionary<string, object>;
        if (record != null) return "{" + string.Join(",", record.Select(p => ToJson(p.Key) + ":" + ToJson(p.Value))) + "}";
        return Convert.ToString(value, CultureInfo.InvariantCulture);
    }

    static void Write(string name, IDictionary<string, object> record)
    {
        File.WriteAllText(Path.Combine(Out, name + ".json"), ToJson(record));
    }

    static void Saved(string name, RemoveBackgroundResult result)
    {
        result.Save(Path.Combine(Out, name + ".bin"));
        var foreground = result.Foreground;
        var rateLimit = result.RateLimit;
        Write(name, new Dictionary<string, object>
        {
            { "width", result.Width }, { "height", result.Height }, { "type", result.Type }, { "content_type", result.ContentType },
            { "credits_charged", result.CreditsCharged.ToString(CultureInfo.InvariantCulture) },
            { "credits_remaining", result.CreditsRemaining.ToString(CultureInfo.InvariantCulture) },
            { "foreground", foreground == null ? null : new Dictionary<string, object> {
                { "top", foreground.Top }, { "left", foreground.Left }, { "width", foreground.Width }, { "height", foreground.Height } } },
            { "rate_limit", rateLimit == null ? null : new Dictionary<string, object> {
                { "limit", rateLimit.Limit }, { "remaining", rateLimit.Remaining }, { "reset", rateLimit.Reset } } },
            { "request_id", result.RequestId }, { "replayed", result.Replayed }, { "idempotency_key", result.IdempotencyKey },
        });
        Console.WriteLine(name + ": " + result);
    }

    static async Task<ApiException> Failed(string name, Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (ApiException e)
        {
            Write(name, new Dictionary<string, object>
            {
                { "class", e.GetType().Name }, { "status", e.Status }, { "code", e.Code }, { "title", e.Title },
                { "detail", e.Detail }, { "request_id", e.RequestId },
            });
            Console.WriteLine(name + ": " + e.GetType().Name + ": " + e.Message);
            return e;
        }
        throw new InvalidOperationException(name + ": no exception was thrown");
    }

    static async Task Run()
    {
        Out = Env("CLEARBG_E2E_OUT");
        Photo = Env("CLEARBG_E2E_PHOTO");
        var poorKey = Env("CLEARBG_E2E_POOR_KEY");
        var limitedKey = Env("CLEARBG_E2E_LIMITED_KEY");
        var imageUrl = Env("CLEARBG_E2E_IMAGE_URL");
        Env("CLEARBG_BASE_URL");
        Env("CLEARBG_API_KEY");

        using (var client = new ClearBGClient()) // CLEARBG_API_KEY and CLEARBG_BASE_URL
        {
            Saved("file", await client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = Photo, Size = "small" }));
            Saved("base64", await client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFileB64 = Convert.ToBase64String(File.ReadAllBytes(Photo)), Size = "small" }));
            Saved("url", await client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageUrl = imageUrl, Size = "small" }));
            Saved("jpg", await client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = Photo, Size = "small", Format = "jpg", BgColor = "#81d4fa" }));
            Saved("zip", await client.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = Photo, Size = "small", Format = "zip" }));
            var account = await client.GetAccountAsync();
            Write("account", new Dictionary<string, object>
            {
                { "credits", new Dictionary<string, object> {
                    { "total", account.Credits.Total.ToString(CultureInfo.InvariantCulture) },
                    { "subscription", account.Credits.Subscription.ToString(CultureInfo.InvariantCulture) },
                    { "payg", account.Credits.Payg.ToString(CultureInfo.InvariantCulture) },
                    { "enterprise", account.Credits.Enterprise.ToString(CultureInfo.InvariantCulture) } } },
                { "free_calls", account.FreeCalls }, { "sizes", account.Sizes }, { "request_id", account.RequestId },
            });
        }

        using (var stranger = new ClearBGClient("not-a-key"))
        {
            await Failed("401", () => stranger.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = Photo, Size = "small" }));
        }
        using (var poor = new ClearBGClient(poorKey))
        {
            await Failed("402", () => poor.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = Photo, Size = "small" }));
        }

        // 429: spend the limited key's allowance with calls the server refuses (each costs one), then a
        // real call: refused with 429 and Retry-After, retried by the SDK after that wait, and done.
        using (var limited = new ClearBGClient(new ClearBGClientOptions { ApiKey = limitedKey, MaxRetries = 3 }))
        {
            var refused = 0;
            while (true)
            {
                var error = await Failed("400", () => limited.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = Photo, Size = "huge" }));
                refused++;
                string remaining;
                error.Headers.TryGetValue("x-ratelimit-remaining", out remaining);
                if (remaining == "0" || refused >= 100) break;
            }
            Write("429-spent", new Dictionary<string, object> { { "refused", refused } });
            Saved("429", await limited.RemoveBackgroundAsync(new RemoveBackgroundRequest { ImageFile = Photo, Size = "small" }));
        }
    }

    static int Main()
    {
        try
        {
            Run().GetAwaiter().GetResult();
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            return 1;
        }
    }
}
