/**
 * The bootstrap user-data a replacement (or first) generation boots with. It needs nothing on the
 * image but a POSIX shell, coreutils-style tools (sha256sum or shasum or openssl, gzip, base64) and
 * curl or wget (node's fetch serves when the image has a node and neither):
 *   1. a Node.js for the agent: the image's own `node` when it is at least AGENT_MIN_NODE, else the
 *      runtime the coordinator serves for the instance's architecture (`uname -m`; in localcloud
 *      SPOTKEEP_LOCALCLOUD_ARCH): downloaded gzipped, its SHA-256 checked against the user-data,
 *      unpacked to /opt/spotkeep/node/bin/node, and the binary's own SHA-256 checked, then recorded
 *      with its size beside it. That copy is on the root disk, so a generation whose root carries it
 *      (the recorded hash still the one asked for, the size unchanged) does not download it again;
 *   2. the agent (the copy baked into the AMI, else a download from the coordinator); with
 *      `agentSha256` every copy (baked, left from an earlier boot, downloaded) is checked before it
 *      runs: a mismatching baked or earlier copy is replaced by a download, a download that
 *      mismatches is refused;
 *   3. `spotkeep-agent restore`: storage (and network) ready before anything else runs; a failure
 *      stops the script with the agent's exit code (the coordinator got `restored` ok:false);
 *   4. the user's own user-data (run as its own program when it starts with `#!`, else with bash,
 *      or sh where there is no bash);
 *   5. `spotkeep-agent run`: under systemd when the host has it (unit from spotkeep-agent.service,
 *      its ExecStart pointed at the node chosen in 1), otherwise in the foreground of this script.
 * When 1 or 2 fails (no usable node and no runtime for the architecture, a download that keeps
 * failing or does not match its hash, an agent that will not start), the script says why in its
 * log and POSTs the reason to the coordinator's /agent/v1/boot-report, proven by the instance's
 * identity document and signature from IMDSv2 (the proof an agent's hello carries), so the
 * workflow waiting on this instance stops at once instead of waiting out its budget; then it exits 1.
 * With `caCertificate` (PEM), the coordinator's CA is written beside the agent and given to node
 * (NODE_EXTRA_CA_CERTS, also in the agent's systemd environment), curl (--cacert) and wget
 * (--ca-certificate), so an https coordinator with a private CA is verified; TLS verification is
 * never turned off.
 * In localcloud's process runtime SPOTKEEP_ROOT_DIR is set: paths go under it and systemd is skipped.
 * Pure function of its options: the coordinator imports it (no other agent code is pulled in).
 */
import { parseCoordinatorUrls } from "../../shared/coordinators.js";

/** The oldest Node.js the agent bundle runs on (its esbuild target). */
export const AGENT_MIN_NODE = "20.19";

/** Architectures the coordinator may serve a runtime for, by Node.js's name for them. */
export const RUNTIME_ARCHES = ["x64", "arm64"] as const;
export type RuntimeArch = (typeof RUNTIME_ARCHES)[number];

export interface BootstrapRuntime {
  /** The Node.js version served (for the log). */
  version: string;
  /** Base URLs (one per coordinator) under which `node-linux-<arch>.gz` is served. */
  baseUrls: readonly string[];
  /** Per architecture the coordinator has a runtime for: SHA-256 (hex) of the .gz and of bin/node. */
  arches: Partial<Record<RuntimeArch, { gzSha256: string; nodeSha256: string }>>;
}

export interface BootstrapOptions {
  /** ws://host:port/agent/v1/ws, or several separated by commas (coordinators tried in turn). */
  coordinatorUrl: string;
  /** http://host:port/agent/v1/agent.js, or one per coordinator (downloads go round them in turn). */
  agentUrl: string | readonly string[];
  /** The user's own user-data (decoded text); may be empty. */
  userUserData: string;
  /** SPOTKEEP_TIME_SCALE for the agent (localcloud runs); omitted = 1. */
  timeScale?: number;
  /** Extra agent environment (e.g. SPOTKEEP_LOG_LEVEL). Names must be shell identifiers. */
  env?: Record<string, string>;
  /** Attempts at downloading the agent, one per second. Default 20. */
  downloadAttempts?: number;
  /** Attempts at downloading the runtime, one per second. Default 5. */
  runtimeAttempts?: number;
  /** SHA-256 (hex) of the agent bundle; when set, an agent that does not match never runs. */
  agentSha256?: string;
  /** PEM CA certificate(s) that sign the coordinator's TLS certificate (a private CA). */
  caCertificate?: string;
  /** The Node.js runtime the coordinator serves for images without a usable node. */
  runtime?: BootstrapRuntime;
  /** http(s)://host:port/agent/v1/boot-report, one per coordinator: where a failed boot says why. */
  reportUrl?: string | readonly string[];
}

/** Single-quote for sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export const AGENT_INSTALL_PATH = "/usr/local/lib/spotkeep/spotkeep-agent.js";

/**
 * V8 flags for the long-running agent. --no-opt (no optimising compiler) saves ~1.5 MiB of RSS at
 * no measurable idle CPU cost (bench/agent-bench.ts runs with the same flags). Not --lite-mode,
 * which saves ~3 MiB but turns WebAssembly off, and with it node's fetch. No heap cap: an
 * out-of-memory abort would be worse for a process that must thaw filesystems.
 */
export const AGENT_NODE_FLAGS = "--no-opt";

const HEX64 = /^[0-9a-f]{64}$/;
const HTTP_URL = /^https?:\/\/[^\s'"`$\\]+$/;

function urlList(v: string | readonly string[] | undefined, field: string): string[] {
  const list = v === undefined ? [] : typeof v === "string" ? [v] : [...v];
  if (list.some((u) => !HTTP_URL.test(u))) throw new Error(`renderBootstrap: ${field} must be an http(s):// URL, got ${JSON.stringify(v)}`);
  return list;
}

export function renderBootstrap(o: BootstrapOptions): string {
  if ("error" in parseCoordinatorUrls(o.coordinatorUrl))
    throw new Error(`renderBootstrap: coordinatorUrl must be a ws:// or wss:// URL, got ${JSON.stringify(o.coordinatorUrl)}`);
  const agentUrls = urlList(o.agentUrl, "agentUrl");
  if (agentUrls.length === 0) throw new Error(`renderBootstrap: agentUrl must be an http(s):// URL, got ${JSON.stringify(o.agentUrl)}`);
  const reportUrls = urlList(o.reportUrl, "reportUrl");
  if (o.timeScale !== undefined && !(o.timeScale > 0)) throw new Error(`renderBootstrap: timeScale must be positive, got ${o.timeScale}`);
  if (o.agentSha256 !== undefined && !HEX64.test(o.agentSha256))
    throw new Error(`renderBootstrap: agentSha256 must be 64 lowercase hex digits, got ${JSON.stringify(o.agentSha256)}`);
  for (const [k, v] of [
    ["downloadAttempts", o.downloadAttempts],
    ["runtimeAttempts", o.runtimeAttempts],
  ] as const)
    if (v !== undefined && !(Number.isInteger(v) && v >= 1 && v <= 3600))
      throw new Error(`renderBootstrap: ${k} must be a whole number from 1 to 3600, got ${v}`);
  const rt = o.runtime;
  const runtimeBases = rt ? urlList(rt.baseUrls, "runtime.baseUrls") : [];
  if (rt) {
    if (!/^\d+\.\d+\.\d+$/.test(rt.version))
      throw new Error(`renderBootstrap: runtime.version must be x.y.z, got ${JSON.stringify(rt.version)}`);
    if (runtimeBases.length === 0) throw new Error("renderBootstrap: runtime.baseUrls must list at least one URL");
    for (const [arch, h] of Object.entries(rt.arches)) {
      if (!(RUNTIME_ARCHES as readonly string[]).includes(arch))
        throw new Error(`renderBootstrap: runtime.arches: unknown architecture ${arch}`);
      if (!h || !HEX64.test(h.gzSha256) || !HEX64.test(h.nodeSha256))
        throw new Error(`renderBootstrap: runtime.arches.${arch}: gzSha256 and nodeSha256 must be 64 lowercase hex digits`);
    }
  }
  const ca = o.caCertificate?.trim();
  if (ca !== undefined && !/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\s-]+-----END CERTIFICATE-----$/.test(ca.replace(/\r\n/g, "\n")))
    throw new Error("renderBootstrap: caCertificate must be PEM (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)");
  const env: Record<string, string> = {
    SPOTKEEP_COORDINATOR: o.coordinatorUrl,
    ...(o.timeScale !== undefined && o.timeScale !== 1 ? { SPOTKEEP_TIME_SCALE: String(o.timeScale) } : {}),
    ...o.env,
  };
  for (const k of Object.keys(env))
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`renderBootstrap: env name ${JSON.stringify(k)} is not a shell identifier`);
  const exports = Object.entries(env)
    .map(([k, v]) => `export ${k}=${shQuote(v)}`)
    .join("\n");
  const envFileLines = [...Object.keys(env), ...(ca ? ["NODE_EXTRA_CA_CERTS"] : [])].map((k) => `${k}=\${${k}}`).join("\n");
  const caPart = ca
    ? `cat > "$SK_DIR/coordinator-ca.pem" <<'SPOTKEEP_CA_END'
${ca.replace(/\r\n/g, "\n")}
SPOTKEEP_CA_END
export NODE_EXTRA_CA_CERTS="$SK_DIR/coordinator-ca.pem"
CURL_CA="--cacert $SK_DIR/coordinator-ca.pem"
WGET_CA="--ca-certificate=$SK_DIR/coordinator-ca.pem"
`
    : `CURL_CA=""
WGET_CA=""
`;
  const safeUrl = agentUrls.join(" ");
  // A heredoc delimiter that cannot occur in the user's text.
  let marker = "SPOTKEEP_USER_DATA_END";
  while (o.userUserData.includes(marker)) marker += "_X";
  const userPart = o.userUserData.trim()
    ? `log "running the user's user-data"
cat > "$SK_DIR/user-data" <<'${marker}'
${o.userUserData.replace(/\n?$/, "\n")}${marker}
chmod +x "$SK_DIR/user-data"
IFS= read -r first < "$SK_DIR/user-data" || true
case "$first" in
  '#!'*) "$SK_DIR/user-data" ;;
  *) if command -v bash >/dev/null 2>&1; then bash "$SK_DIR/user-data"; else sh "$SK_DIR/user-data"; fi ;;
esac || log "user-data exited with $?"
`
    : "";
  const arch = (a: RuntimeArch) => rt?.arches[a];
  return `#!/bin/sh
# spotkeep bootstrap: a node for the agent, restore storage and network, the user's user-data, the agent.
set -u
log() { echo "[spotkeep-bootstrap] $*"; }
ROOT="\${SPOTKEEP_ROOT_DIR:-}"
SK_DIR="$ROOT/opt/spotkeep"
mkdir -p "$SK_DIR" "$ROOT/var/lib/spotkeep-agent"
${exports}
export SPOTKEEP_STATE_DIR="\${SPOTKEEP_STATE_DIR:-$ROOT/var/lib/spotkeep-agent}"
${caPart}AGENT_SHA256=${o.agentSha256 ?? ""}
AGENT_URLS=${shQuote(agentUrls.join(" "))}
REPORT_URLS=${shQuote(reportUrls.join(" "))}
RT_VERSION=${rt?.version ?? ""}
RT_URLS=${shQuote(runtimeBases.join(" "))}
RT_X64=${arch("x64") ? `"${arch("x64")!.gzSha256} ${arch("x64")!.nodeSha256}"` : '""'}
RT_ARM64=${arch("arm64") ? `"${arch("arm64")!.gzSha256} ${arch("arm64")!.nodeSha256}"` : '""'}
IMDS="\${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}"
ANY_NODE=$(command -v node 2>/dev/null || true)
# pick N WORD...: the word at N modulo the count (downloads go round the coordinators).
pick() { _n=$1; shift; shift $((_n % $#)); echo "$1"; }
# sha256 FILE: its SHA-256 in hex.
sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1"
  else openssl dgst -sha256 -r "$1"; fi | cut -d' ' -f1
}
# verify FILE WANT: true when WANT is empty or FILE's SHA-256 is WANT (else prints why not).
verify() {
  [ -z "$2" ] && return 0
  _got=$(sha256 "$1") || { echo "no sha256sum, shasum or openssl to check it with"; return 1; }
  [ "$_got" = "$2" ] && return 0
  echo "sha256 $_got, expected $2"; return 1
}
# get URL FILE [HEADER]: download (curl, else wget, else node's fetch).
get() {
  if command -v curl >/dev/null 2>&1; then curl -fsS --connect-timeout 5 --max-time 600 $CURL_CA \${3:+-H "$3"} -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -T 30 $WGET_CA \${3:+--header="$3"} -O "$2" "$1"
  elif [ -n "$ANY_NODE" ]; then "$ANY_NODE" -e 'const [u,f,h]=process.argv.slice(1);
    fetch(u,{headers:h?[h.split(/: (.*)/s).slice(0,2)]:[]}).then(async r=>{if(!r.ok)throw new Error("HTTP "+r.status);
      require("fs").writeFileSync(f,Buffer.from(await r.arrayBuffer()))}).catch(e=>{console.error(e.message);process.exit(1)})' "$1" "$2" "\${3:-}"
  else echo "no curl, wget or node to download with" >&2; return 1; fi
}
# send METHOD URL BODY [HEADER]: a JSON request whose answer is printed (curl, else wget).
send() {
  if command -v curl >/dev/null 2>&1; then curl -fsS --connect-timeout 5 --max-time 10 $CURL_CA -X "$1" \${4:+-H "$4"} \\
    -H 'content-type: application/json' --data "$3" "$2"
  else wget -q -T 10 $WGET_CA --method="$1" \${4:+--header="$4"} --header='content-type: application/json' --body-data="$3" -O - "$2"; fi
}
# fail STAGE REASON: say why in the log and to the coordinator (IMDSv2 identity as proof), exit 1.
fail() {
  log "$2"
  _why=$(printf '%s' "$2" | tr -cd 'A-Za-z0-9 ._:/()=+,@%-' | cut -c1-400)
  _tok=$(send PUT "$IMDS/latest/api/token" "" "X-aws-ec2-metadata-token-ttl-seconds: 60" 2>/dev/null) \\
    && get "$IMDS/latest/dynamic/instance-identity/document" "$SK_DIR/identity.json" "X-aws-ec2-metadata-token: $_tok" \\
    && get "$IMDS/latest/dynamic/instance-identity/signature" "$SK_DIR/identity.sig" "X-aws-ec2-metadata-token: $_tok" \\
    && _doc=$(base64 < "$SK_DIR/identity.json" | tr -d '\\n') && _sig=$(tr -d '\\n ' < "$SK_DIR/identity.sig") \\
    || { log "cannot read the identity document from IMDS: the coordinator is not told"; exit 1; }
  _body="{\\"stage\\":\\"$1\\",\\"reason\\":\\"$_why\\",\\"document\\":\\"$_doc\\",\\"signature\\":\\"$_sig\\"}"
  for _u in $REPORT_URLS; do send POST "$_u" "$_body" >/dev/null && { log "told the coordinator ($_u)"; exit 1; }; done
  log "could not tell the coordinator"
  exit 1
}
# node_ok NODE: true when NODE runs and is at least ${AGENT_MIN_NODE}.
node_ok() {
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number),[x,y]="${AGENT_MIN_NODE}".split(".").map(Number);
    process.exit(a>x||(a===x&&b>=y)?0:1)' 2>/dev/null
}
NODE=""
if [ -n "$ANY_NODE" ] && node_ok "$ANY_NODE"; then NODE=$ANY_NODE; fi
if [ -z "$NODE" ]; then
  ARCH="\${SPOTKEEP_LOCALCLOUD_ARCH:-$(uname -m)}"
  case "$ARCH" in x86_64 | amd64) RT_ARCH=x64; RT=$RT_X64 ;; aarch64 | arm64) RT_ARCH=arm64; RT=$RT_ARM64 ;; *) RT_ARCH=$ARCH; RT="" ;; esac
  [ -n "$RT" ] || fail runtime "the image has no Node.js ${AGENT_MIN_NODE}+ (\${ANY_NODE:-none}) and the coordinator serves no runtime for linux-$RT_ARCH"
  RT_GZ=\${RT% *}
  RT_BIN=\${RT#* }
  RT_DIR="$SK_DIR/node"
  # A copy this bootstrap checked (by SHA-256, at download) recorded its hash and size: one that
  # still has both is the runtime asked for, without reading 100 MB again at every boot.
  if [ -x "$RT_DIR/bin/node" ] && [ "$(cat "$RT_DIR/.verified" 2>/dev/null)" = "$RT_BIN $(wc -c < "$RT_DIR/bin/node" | tr -d ' ')" ]; then
    log "using Node.js $RT_VERSION kept on the root disk ($RT_DIR)"
  else
    rm -rf "$RT_DIR" "$RT_DIR.part"
    mkdir -p "$RT_DIR.part/bin"
    n=0
    while :; do
      _u="$(pick $n $RT_URLS)/node-linux-$RT_ARCH.gz"
      log "no Node.js ${AGENT_MIN_NODE}+ on the image: downloading Node.js $RT_VERSION for linux-$RT_ARCH from $_u"
      if get "$_u" "$RT_DIR.part/node.gz"; then
        if why=$(verify "$RT_DIR.part/node.gz" "$RT_GZ") && gzip -dc "$RT_DIR.part/node.gz" > "$RT_DIR.part/bin/node" \\
          && why=$(verify "$RT_DIR.part/bin/node" "$RT_BIN"); then
          break
        fi
        why="refusing the runtime from $_u: \${why:-not a gzip file}"
      else
        why="cannot download the runtime from $_u"
      fi
      log "$why"
      n=$((n+1))
      [ $n -ge ${o.runtimeAttempts ?? 5} ] && { rm -rf "$RT_DIR.part"; fail runtime "$why (after $n attempts)"; }
      sleep 1
    done
    rm -f "$RT_DIR.part/node.gz"
    chmod 755 "$RT_DIR.part/bin/node"
    echo "$RT_BIN $(wc -c < "$RT_DIR.part/bin/node" | tr -d ' ')" > "$RT_DIR.part/.verified"
    mv "$RT_DIR.part" "$RT_DIR"
  fi
  NODE="$RT_DIR/bin/node"
  node_ok "$NODE" || fail runtime "the downloaded Node.js $RT_VERSION does not run on this instance ($ARCH)"
fi
AGENT="$SK_DIR/spotkeep-agent.js"
if [ -z "$ROOT" ] && [ -s ${AGENT_INSTALL_PATH} ] && verify ${AGENT_INSTALL_PATH} "$AGENT_SHA256" >/dev/null; then AGENT=${AGENT_INSTALL_PATH}; fi
if [ -s "$AGENT" ] && ! verify "$AGENT" "$AGENT_SHA256" >/dev/null; then log "discarding $AGENT: not the coordinator's agent"; rm -f "$AGENT"; fi
n=0
while [ ! -s "$AGENT" ]; do
  rm -f "$AGENT.part"
  _u=$(pick $n $AGENT_URLS)
  get "$_u" "$AGENT.part" || true
  if [ -s "$AGENT.part" ]; then
    if why=$(verify "$AGENT.part" "$AGENT_SHA256"); then mv "$AGENT.part" "$AGENT"; break; fi
    log "refusing the agent downloaded from $_u: $why"
    rm -f "$AGENT.part"
  fi
  n=$((n+1))
  [ $n -ge ${o.downloadAttempts ?? 20} ] && fail agent "cannot get a good agent from ${safeUrl} (after $n attempts)"
  sleep 1
done
log "restoring storage and network"
"$NODE" "$AGENT" restore
rc=$?
# 127/126: the agent did not start at all (node missing or not executable): nothing said hello.
[ $rc -eq 126 ] || [ $rc -eq 127 ] && fail agent "the agent did not start: $NODE exited $rc"
if [ $rc -ne 0 ]; then log "restore failed (exit $rc); not starting the workload"; exit $rc; fi
${userPart}if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  mkdir -p /etc/spotkeep /usr/local/lib/spotkeep
  [ "$AGENT" = ${AGENT_INSTALL_PATH} ] || cp "$AGENT" ${AGENT_INSTALL_PATH}
  cat > /etc/spotkeep/agent.env <<ENVFILE
${envFileLines}
SPOTKEEP_STATE_DIR=\${SPOTKEEP_STATE_DIR}
ENVFILE
  cat > /etc/systemd/system/spotkeep-agent.service <<'UNIT'
${SYSTEMD_UNIT}UNIT
  sed -i "s#^ExecStart=/usr/bin/env node #ExecStart=$NODE #" /etc/systemd/system/spotkeep-agent.service
  systemctl daemon-reload && systemctl enable --now spotkeep-agent.service
else
  log "starting the agent"
  exec "$NODE" ${AGENT_NODE_FLAGS} "$AGENT" run
fi
`;
}

/** The systemd unit (same text as agent/deploy/spotkeep-agent.service). */
export const SYSTEMD_UNIT = `[Unit]
Description=spotkeep agent: spot notices, quiesce and restore of persisted volumes
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
EnvironmentFile=-/etc/spotkeep/agent.env
ExecStart=/usr/bin/env node ${AGENT_NODE_FLAGS} ${AGENT_INSTALL_PATH} run
Restart=always
RestartSec=2
TimeoutStopSec=30
KillMode=mixed
StandardOutput=journal
StandardError=journal
User=root

[Install]
WantedBy=multi-user.target
`;
