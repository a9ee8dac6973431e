#!/usr/bin/env node
// The `pinion` command: runs the TypeScript CLI through tsx's loader.
import { register } from "tsx/esm/api";

register();
await import("../scripts/pinion.ts");
