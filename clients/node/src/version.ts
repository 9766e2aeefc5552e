// Kept equal to package.json's version by test/package.test.mjs (sent as User-Agent clearbg-node/<version>).
export const VERSION = "0.1.0";
