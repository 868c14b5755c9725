import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * A folder the product ships beside package.json (profiles/, terminology/): found by walking up from this
 * file, which is src/config under jest and dist/src/config after tsc. dist/ holds a package.json copy too,
 * so the folder itself must be there.
 */
export function shippedDir(name: string, from: string = __dirname): string {
  let dir = path.resolve(from);
  for (;;) {
    const candidate = path.join(dir, name);
    if (existsSync(path.join(dir, 'package.json')) && existsSync(candidate) && statSync(candidate).isDirectory()) {
      return candidate;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`Cannot find the shipped ${name}/ folder above ${from}`);
    dir = up;
  }
}
