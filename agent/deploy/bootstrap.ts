/**
 * The bootstrap user-data a replacement (or first) generation boots with (design §4.1 step 8):
 *   1. get the agent (the copy baked into the AMI, else download it from the coordinator;
 *      node's fetch is used first because curl may be absent, e.g. in localcloud);
 *   2. `spotkeep-agent restore`: storage (and network) ready before anything else runs; a
 *      failure stops the script with the agent's exit code (the coordinator got `restored` ok:false
 *      and an `error`);
 *   3. the user's own user-data (run with bash from a file, so `#!` scripts work too);
 *   4. `spotkeep-agent run`: under systemd when the host has it (unit from spotkeep-agent.service),
 *      otherwise in the foreground of this script (localcloud process runtime).
 * In localcloud's process runtime SPOTKEEP_ROOT_DIR is set: paths go under it and systemd is skipped.
 * Pure function of its options: the coordinator imports it (no other agent code is pulled in).
 */
export interface BootstrapOptions {
  /** ws://host:port/agent/v1/ws */
  coordinatorUrl: string;
  /** http://host:port/agent/v1/agent.js */
  agentUrl: string;
  /** The user's own user-data (decoded text); may be empty. */
  userUserData: string;
  /** SPOTKEEP_TIME_SCALE for the agent (localcloud runs); omitted = 1. */
  timeScale?: number;
  /** Extra agent environment (e.g. SPOTKEEP_LOG_LEVEL). Names must be shell identifiers. */
  env?: Record<string, string>;
  /** Attempts at downloading the agent, one per second. Default 60. */
  downloadAttempts?: number;
}

/** Single-quote for sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export const AGENT_INSTALL_PATH = "/usr/local/lib/spotkeep/spotkeep-agent.js";

export function renderBootstrap(o: BootstrapOptions): string {
  if (!/^wss?:\/\//.test(o.coordinatorUrl))
    throw new Error(`renderBootstrap: coordinatorUrl must be a ws:// or wss:// URL, got ${JSON.stringify(o.coordinatorUrl)}`);
  if (!/^https?:\/\//.test(o.agentUrl))
    throw new Error(`renderBootstrap: agentUrl must be an http(s):// URL, got ${JSON.stringify(o.agentUrl)}`);
  if (o.timeScale !== undefined && !(o.timeScale > 0)) throw new Error(`renderBootstrap: timeScale must be positive, got ${o.timeScale}`);
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
  const envFileLines = Object.keys(env)
    .map((k) => `${k}=\${${k}}`)
    .join("\n");
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
AGENT="$SK_DIR/spotkeep-agent.js"
if [ -z "$ROOT" ] && [ -s ${AGENT_INSTALL_PATH} ]; then AGENT=${AGENT_INSTALL_PATH}; fi
n=0
while [ ! -s "$AGENT" ]; do
  node -e 'const [u,f]=process.argv.slice(1);fetch(u).then(async r=>{if(!r.ok)throw new Error("HTTP "+r.status);const fs=require("fs");fs.writeFileSync(f+".tmp",Buffer.from(await r.arrayBuffer()));fs.renameSync(f+".tmp",f)}).catch(e=>{console.error(e.message);process.exit(1)})' ${shQuote(o.agentUrl)} "$AGENT" \\
    || curl -fsS -o "$AGENT" ${shQuote(o.agentUrl)} || true
  n=$((n+1)); [ -s "$AGENT" ] && break
  [ $n -ge ${o.downloadAttempts ?? 60} ] && { log "cannot download the agent from ${o.agentUrl.replace(/[`$"\\]/g, "")}"; exit 1; }
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
  exec node "$AGENT" run
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
ExecStart=/usr/bin/env node ${AGENT_INSTALL_PATH} run
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
