#!/usr/bin/env node
// Runs the TypeScript entry through tsx (the workspace's loader) until the package ships built JS.
import { register } from "tsx/esm/api";

register();
await import("../src/uffd-conform.ts");
