#!/usr/bin/env node
'use strict';
const path = require('node:path');
const fs = require('node:fs');

const cli = path.join(__dirname, '..', 'dist', 'src', 'cli', 'index.js');
if (!fs.existsSync(cli)) {
  process.stderr.write('sp-bridge is not built yet: run `npm run build` (npm ci does it for you) and try again\n');
  process.exit(2);
}
process.exitCode = require(cli).main(process.argv.slice(2));
