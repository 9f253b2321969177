// Command-line arguments of the Node benchmarks: `--name value` options, `--flag`s and one
// positional argument, the model file (usage is printed and the process exits without it).

import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function benchArgs(usage, args = process.argv.slice(2)) {
  const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const model = args.find((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1].startsWith('--')));
  if (!model) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  return { args, opt, model };
}
