using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using NUnit.Framework;

namespace ClearBG.Tests
{
    /// <summary>
    /// The package targets netstandard2.0 and net6.0, and only Mono compiles it here: every type the
    /// compiled library refers to must be one that netstandard 2.0 has (Mono's netstandard.dll facade
    /// lists them), read with Mono's IL disassembler (ikdasm). Members are not checked this way.
    /// </summary>
    [TestFixture]
    public class NetStandardTests
    {
        static string Disassemble(string assembly)
        {
            var start = new ProcessStartInfo("ikdasm", "\"" + assembly + "\"") { RedirectStandardOutput = true, UseShellExecute = false };
            using (var process = Process.Start(start))
            {
                var output = process.StandardOutput.ReadToEnd();
                process.WaitForExit();
                Assert.AreEqual(0, process.ExitCode, "ikdasm " + assembly);
                return output;
            }
        }

        [Test]
        public void EveryTypeTheLibraryUsesIsInNetStandard20()
        {
            var facade = Path.Combine(Path.GetDirectoryName(typeof(object).Assembly.Location), "Facades", "netstandard.dll");
            var standard = Regex.Matches(Disassemble(facade), @"^\.class extern forwarder (\S+)", RegexOptions.Multiline)
                .Cast<Match>().Select(m => m.Groups[1].Value).ToList();
            Assert.Greater(standard.Count, 2000, "netstandard.dll's forwarders");
            CollectionAssert.DoesNotContain(standard, "System.Net.Http.WebRequestHandler", "a .NET Framework-only type");
            var used = Regex.Matches(Disassemble(typeof(ClearBGClient).Assembly.Location), @"\[([\w.]+)\]([\w.`]+)")
                .Cast<Match>().Where(m => m.Groups[1].Value != "ClearBG").Select(m => m.Groups[2].Value).Distinct().ToList();
            Assert.Greater(used.Count, 50);
            CollectionAssert.Contains(used, "System.Net.Http.MultipartFormDataContent");
            CollectionAssert.IsEmpty(used.Except(standard).ToList(), "types outside netstandard 2.0");
        }
    }
}
