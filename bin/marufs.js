#!/usr/bin/env node
// The marufs command line (built from src/cli/main.ts by `npm run build`).
import '../dist/src/cli/main.js';
