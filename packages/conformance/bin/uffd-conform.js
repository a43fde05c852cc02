#!/usr/bin/env node
// npx uffd-conform: the built entry (dist is made by `npm ci`/`npm run build`, tsc -b).
await import("../dist/uffd-conform.js");
