/**
 * The bootstrap user-data a replacement (or first) generation boots with:
 *   1. get the agent (the copy baked into the AMI, else download it from the coordinator;
 *      node's fetch is used first because curl may be absent, e.g. in localcloud); with
 *      `agentSha256` every copy (baked, left from an earlier boot, downloaded) is checked against
 *      it before it runs: a mismatching baked or earlier copy is replaced by a download, and a
 *      download that mismatches is refused (after downloadAttempts, exit 1);
 *   2. `spotkeep-agent restore`: storage (and network) ready before anything else runs; a
 *      failure stops the script with the agent's exit code (the coordinator got `restored` ok:false
 *      and an `error`);
 *   3. the user's own user-data (run with bash from a file, so `#!` scripts work too);
 *   4. `spotkeep-agent run`: under systemd when the host has it (unit from spotkeep-agent.service),
 *      otherwise in the foreground of this script (localcloud process runtime).
 * With `caCertificate` (PEM), the coordinator's CA is written beside the agent and given to node
 * (NODE_EXTRA_CA_CERTS, also in the agent's systemd environment) and curl (--cacert), so an https
 * coordinator with a private CA is verified; TLS verification is never turned off.
 * In localcloud's process runtime SPOTKEEP_ROOT_DIR is set: paths go under it and systemd is skipped.
 * Pure function of its options: the coordinator imports it (no other agent code is pulled in).
 */
import { parseCoordinatorUrls } from "../../shared/coordinators.js";

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
  /** Attempts at downloading the agent, one per second. Default 60. */
  downloadAttempts?: number;
  /** SHA-256 (hex) of the agent bundle; when set, an agent that does not match never runs. */
  agentSha256?: string;
  /** PEM CA certificate(s) that sign the coordinator's TLS certificate (a private CA). */
  caCertificate?: string;
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

export function renderBootstrap(o: BootstrapOptions): string {
  if ("error" in parseCoordinatorUrls(o.coordinatorUrl))
    throw new Error(`renderBootstrap: coordinatorUrl must be a ws:// or wss:// URL, got ${JSON.stringify(o.coordinatorUrl)}`);
  const agentUrls = typeof o.agentUrl === "string" ? [o.agentUrl] : [...o.agentUrl];
  if (agentUrls.length === 0 || agentUrls.some((u) => !/^https?:\/\/[^\s]+$/.test(u)))
    throw new Error(`renderBootstrap: agentUrl must be an http(s):// URL, got ${JSON.stringify(o.agentUrl)}`);
  if (o.timeScale !== undefined && !(o.timeScale > 0)) throw new Error(`renderBootstrap: timeScale must be positive, got ${o.timeScale}`);
  if (o.agentSha256 !== undefined && !/^[0-9a-f]{64}$/.test(o.agentSha256))
    throw new Error(`renderBootstrap: agentSha256 must be 64 lowercase hex digits, got ${JSON.stringify(o.agentSha256)}`);
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
`
    : `CURL_CA=""
`;
  const safeUrl = agentUrls.join(" ").replace(/[`$"\\]/g, "");
  // A heredoc delimiter that cannot occur in the user's text.
  let marker = "SPOTKEEP_USER_DATA_END";
  while (o.userUserData.includes(marker)) marker += "_X";
  const userPart = o.userUserData.trim()
    ? `log "running the user's user-data"
cat > "$SK_DIR/user-data" <<'${marker}'
${o.userUserData.replace(/\n?$/, "\n")}${marker}
chmod +x "$SK_DIR/user-data"
bash "$SK_DIR/user-data" || log "user-data exited with $?"
`
    : "";
  return `#!/bin/bash
# spotkeep bootstrap: restore storage and network, run the user's user-data, start the agent.
set -u
log() { echo "[spotkeep-bootstrap] $*"; }
ROOT="\${SPOTKEEP_ROOT_DIR:-}"
SK_DIR="$ROOT/opt/spotkeep"
mkdir -p "$SK_DIR" "$ROOT/var/lib/spotkeep-agent"
${exports}
export SPOTKEEP_STATE_DIR="\${SPOTKEEP_STATE_DIR:-$ROOT/var/lib/spotkeep-agent}"
${caPart}AGENT_SHA256=${o.agentSha256 ?? ""}
# verify FILE: true when no hash is configured or FILE's SHA-256 matches it (prints the mismatch).
verify() {
  [ -z "$AGENT_SHA256" ] && return 0
  node -e 'const [f,want]=process.argv.slice(1);
    const got=require("crypto").createHash("sha256").update(require("fs").readFileSync(f)).digest("hex");
    if(got!==want){console.log("sha256 "+got+", expected "+want);process.exit(1)}' "$1" "$AGENT_SHA256"
}
AGENT_URLS=(${agentUrls.map(shQuote).join(" ")})
AGENT="$SK_DIR/spotkeep-agent.js"
if [ -z "$ROOT" ] && [ -s ${AGENT_INSTALL_PATH} ] && verify ${AGENT_INSTALL_PATH} >/dev/null; then AGENT=${AGENT_INSTALL_PATH}; fi
if [ -s "$AGENT" ] && ! verify "$AGENT" >/dev/null; then log "discarding $AGENT: not the coordinator's agent"; rm -f "$AGENT"; fi
n=0
while [ ! -s "$AGENT" ]; do
  rm -f "$AGENT.part"
  AGENT_URL="\${AGENT_URLS[$((n % \${#AGENT_URLS[@]}))]}"
  node -e 'const [u,f]=process.argv.slice(1);
    fetch(u).then(async r=>{if(!r.ok)throw new Error("HTTP "+r.status);require("fs").writeFileSync(f,Buffer.from(await r.arrayBuffer()))})
      .catch(e=>{console.error(e.message);process.exit(1)})' "$AGENT_URL" "$AGENT.part" \\
    || curl -fsS $CURL_CA -o "$AGENT.part" "$AGENT_URL" || true
  if [ -s "$AGENT.part" ]; then
    if why=$(verify "$AGENT.part"); then mv "$AGENT.part" "$AGENT"; break; fi
    log "refusing the agent downloaded from ${safeUrl}: $why"
    rm -f "$AGENT.part"
  fi
  n=$((n+1))
  [ $n -ge ${o.downloadAttempts ?? 60} ] && { log "cannot get a good agent from ${safeUrl}; not starting anything"; exit 1; }
  sleep 1
done
log "restoring storage and network"
node "$AGENT" restore
rc=$?
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
  systemctl daemon-reload && systemctl enable --now spotkeep-agent.service
else
  log "starting the agent"
  exec node ${AGENT_NODE_FLAGS} "$AGENT" run
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
