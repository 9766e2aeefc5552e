// Type-checked by test/package.test.mjs (tsc, NodeNext): what a CommonJS TypeScript user writes.
import clearbg = require("clearbg");

const client = new clearbg.ClearBG();

export async function run(): Promise<string | undefined> {
  try {
    const result = await client.removeBackground({ imageFile: Buffer.from([1, 2, 3]) });
    return result.type;
  } catch (err) {
    if (err instanceof clearbg.InsufficientCreditsError) return err.code;
    throw err;
  }
}
