#!/usr/bin/env node
import { main } from "./cli.js";

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    process.stderr.write(`clearbg: unexpected error: ${error?.stack ?? error}\n`);
    process.exitCode = 1;
  },
);
