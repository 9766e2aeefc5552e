using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;

namespace ClearBG.Tests
{
    /// <summary>One request the fake server saw.</summary>
    public sealed class Recorded
    {
        public string Method;
        public string Path;
        public Dictionary<string, string> Headers;
        public byte[] Body;
        public DateTime At;

        /// <summary>A multipart body's text fields (name: value) and files (name: "filename|bytes as text").</summary>
        public Dictionary<string, string> Form()
        {
            var boundary = Regex.Match(Headers["content-type"], "boundary=\"?([^\";]+)\"?").Groups[1].Value;
            var text = Encoding.GetEncoding("ISO-8859-1").GetString(Body);
            var parts = text.Split(new[] { "--" + boundary }, StringSplitOptions.None);
            var form = new Dictionary<string, string>();
            for (var i = 1; i < parts.Length - 1; i++)
            {
                var split = parts[i].Substring(2).Split(new[] { "\r\n\r\n" }, 2, StringSplitOptions.None);
                var name = Regex.Match(split[0], "name=\"([^\"]*)\"").Groups[1].Value;
                var file = Regex.Match(split[0], "filename=\"([^\"]*)\"");
                var value = split[1].Substring(0, split[1].Length - 2);
                form[name] = file.Success ? file.Groups[1].Value + "|" + value : value;
            }
            return form;
        }
    }

    /// <summary>A scripted reply: status, headers, body; Reset closes the connection unanswered; Delay answers late.</summary>
    public sealed class Reply
    {
        public int Status = 200;
        public Dictionary<string, string> Headers = new Dictionary<string, string>();
        public byte[] Body = new byte[0];
        public bool Reset;
        public TimeSpan Delay = TimeSpan.Zero;
    }

    /// <summary>
    /// A small scripted HTTP/1.1 server on 127.0.0.1 for the unit tests (a plain TcpListener, so a
    /// reply can also be a connection reset): each request is recorded and answered by the next
    /// scripted reply, or by the last one when the script runs out; every answer closes its connection.
    /// </summary>
    public sealed class FakeServer : IDisposable
    {
        public static readonly byte[] Png1x1 = Enumerable.Range(0, 67).Select(i => Convert.ToByte(
            ("89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
             "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a0e3" +
             "d5f20000000049454e44ae426082").Substring(i * 2, 2), 16)).ToArray();

        static readonly Encoding Latin1 = Encoding.GetEncoding("ISO-8859-1");
        readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
        readonly List<Reply> _replies;
        readonly List<Recorded> _requests = new List<Recorded>();
        public string Url { get; }

        public FakeServer(params Reply[] script)
        {
            _replies = script.Length > 0 ? script.ToList() : new List<Reply> { Ok() };
            _listener.Start();
            Url = "http://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port;
            new Thread(Serve) { IsBackground = true }.Start();
        }
        public static Reply Ok(params string[] extraHeaders)
        {
            var reply = new Reply { Body = Png1x1 };
            var headers = new[] {
                "Content-Type", "image/png", "X-Width", "321", "X-Height", "481", "X-Type", "person",
                "X-Credits-Charged", "1", "X-Credits-Remaining", "49.5", "X-Foreground-Top", "10",
                "X-Foreground-Left", "20", "X-Foreground-Width", "200", "X-Foreground-Height", "400",
                "X-RateLimit-Limit", "500", "X-RateLimit-Remaining", "499", "X-RateLimit-Reset", "1790000000",
                "X-Request-Id", "req-ok-1" }.Concat(extraHeaders).ToArray();
            for (var i = 0; i < headers.Length; i += 2) reply.Headers[headers[i]] = headers[i + 1];
            return reply;
        }

        public static Reply AccountReply(string body = null)
        {
            body = body ?? "{\"data\":{\"attributes\":{\"credits\":{\"total\":50,\"subscription\":45,\"payg\":5,\"enterprise\":0},"
                + "\"api\":{\"free_calls\":50,\"sizes\":\"all\"}}}}";
            var reply = new Reply { Body = Encoding.UTF8.GetBytes(body) };
            reply.Headers["Content-Type"] = "application/json";
            reply.Headers["X-Request-Id"] = "req-account";
            return reply;
        }

        public static Reply Error(int status, string code, string retryAfter = null, string title = "Title", string detail = "Detail")
        {
            var reply = new Reply
            {
                Status = status,
                Body = Encoding.UTF8.GetBytes("{\"errors\":[{\"title\":\"" + title + "\",\"code\":\"" + code + "\",\"detail\":\"" + detail + "\"}]}"),
            };
            reply.Headers["Content-Type"] = "application/json";
            reply.Headers["X-Request-Id"] = "req-" + status;
            if (retryAfter != null) reply.Headers["Retry-After"] = retryAfter;
            return reply;
        }

        public List<Recorded> Requests
        {
            get { lock (_requests) return _requests.ToList(); }
        }

        /// <summary>Replaces what the next requests get.</summary>
        public void Script(params Reply[] replies)
        {
            lock (_requests)
            {
                _replies.Clear();
                _replies.AddRange(replies);
            }
        }

        void Serve()
        {
            while (true)
            {
                TcpClient connection;
                try
                {
                    connection = _listener.AcceptTcpClient();
                }
                catch (Exception)
                {
                    return; // stopped
                }
                ThreadPool.QueueUserWorkItem(_ => Handle(connection));
            }
        }

        static string ReadLine(Stream stream)
        {
            var line = new List<byte>();
            int b;
            while ((b = stream.ReadByte()) >= 0)
            {
                if (b == '\n') break;
                if (b != '\r') line.Add((byte)b);
            }
            return Latin1.GetString(line.ToArray());
        }

        static byte[] ReadExactly(Stream stream, int count)
        {
            var buffer = new byte[count];
            var done = 0;
            while (done < count)
            {
                var read = stream.Read(buffer, done, count - done);
                if (read <= 0) break;
                done += read;
            }
            return buffer;
        }

        void Handle(TcpClient connection)
        {
            using (connection)
            {
                try
                {
                    var stream = connection.GetStream();
                    var requestLine = ReadLine(stream).Split(' ');
                    var headers = new Dictionary<string, string>();
                    for (var line = ReadLine(stream); line != ""; line = ReadLine(stream))
                    {
                        var colon = line.IndexOf(':');
                        headers[line.Substring(0, colon).Trim().ToLowerInvariant()] = line.Substring(colon + 1).Trim();
                    }
                    if (headers.ContainsKey("expect")) Write(stream, "HTTP/1.1 100 Continue\r\n\r\n");
                    var body = new MemoryStream();
                    string value;
                    if (headers.TryGetValue("transfer-encoding", out value) && value.Contains("chunked"))
                    {
                        for (var size = Convert.ToInt32(ReadLine(stream).Split(';')[0], 16); size > 0; size = Convert.ToInt32(ReadLine(stream).Split(';')[0], 16))
                        {
                            var chunk = ReadExactly(stream, size);
                            body.Write(chunk, 0, chunk.Length);
                            ReadLine(stream);
                        }
                        ReadLine(stream);
                    }
                    else if (headers.TryGetValue("content-length", out value))
                    {
                        var bytes = ReadExactly(stream, int.Parse(value));
                        body.Write(bytes, 0, bytes.Length);
                    }
                    Reply reply;
                    lock (_requests)
                    {
                        _requests.Add(new Recorded { Method = requestLine[0], Path = requestLine[1], Headers = headers, Body = body.ToArray(), At = DateTime.UtcNow });
                        reply = _replies[0];
                        if (_replies.Count > 1) _replies.RemoveAt(0);
                    }
                    if (reply.Reset)
                    {
                        connection.Client.LingerState = new LingerOption(true, 0); // closing sends RST
                        return;
                    }
                    if (reply.Delay > TimeSpan.Zero) Thread.Sleep(reply.Delay);
                    var head = new StringBuilder("HTTP/1.1 " + reply.Status + " " + Reason(reply.Status) + "\r\n");
                    foreach (var header in reply.Headers) head.Append(header.Key + ": " + header.Value + "\r\n");
                    head.Append("Content-Length: " + reply.Body.Length + "\r\nConnection: close\r\n\r\n");
                    Write(stream, head.ToString());
                    stream.Write(reply.Body, 0, reply.Body.Length);
                    stream.Flush();
                }
                catch (IOException)
                {
                    // the client gave up (a timeout test)
                }
            }
        }

        static void Write(Stream stream, string text)
        {
            var bytes = Latin1.GetBytes(text);
            stream.Write(bytes, 0, bytes.Length);
        }

        static string Reason(int status)
        {
            switch (status)
            {
                case 200: return "OK";
                case 502: return "Bad Gateway";
                default: return "Reason";
            }
        }

        public void Dispose()
        {
            _listener.Stop();
        }
    }
}
