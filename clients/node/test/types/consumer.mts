// Type-checked by test/package.test.mjs (tsc, NodeNext): what an ES-module TypeScript user writes.
import fs from "node:fs";
import { ClearBG, RateLimitError, type RemoveBackgroundResult } from "clearbg";

const client = new ClearBG({ apiKey: "k", baseUrl: "http://127.0.0.1:8080", timeout: 60_000, maxRetries: 3 });

export async function run(): Promise<number> {
  const result: RemoveBackgroundResult = await client.removeBackground(
    { imageFile: fs.createReadStream("photo.jpg"), size: "auto", format: "png", crop: true, typeLevel: 2 },
    { idempotencyKey: "order-1", signal: AbortSignal.timeout(1000) },
  );
  const bytes: Uint8Array = result.data;
  const top: number | undefined = result.foreground?.top;
  try {
    const account = await client.account();
    return account.credits.total + account.freeCalls;
  } catch (err) {
    if (err instanceof RateLimitError) return err.status + (err.retryAfter ?? 0);
  }
  // @ts-expect-error a misspelt parameter is a type error
  await client.removeBackground({ bgColour: "red" });
  // @ts-expect-error crop is a boolean
  await client.removeBackground({ imageFile: "a.jpg", crop: "yes" });
  return bytes.length + result.width + (top ?? 0);
}
