/**
 * The replacement's user-data (design §4.1 step 8): get the agent, `spotkeep-agent restore`
 * (storage and network ready), then the user's own user-data, then `spotkeep-agent run`
 * (systemd where present, else in the foreground of this script).
 *
 * In localcloud's process runtime the "instance" is a bash process on this machine with
 * SPOTKEEP_ROOT_DIR set: paths go under it, `node` is on PATH, and curl may be absent, so the
 * download uses node itself.
 */
export interface BootstrapOptions {
  /** ws://host:port/agent/v1/ws */
  coordinatorWsUrl: string;
  /** http://host:port/agent/v1/agent.js */
  agentUrl: string;
  userUserData: string;
  timeScale?: number;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export function renderBootstrap(o: BootstrapOptions): string {
  const marker = `SPOTKEEP_USER_DATA_${Math.abs(hash(o.userUserData)).toString(36)}`;
  const userPart = o.userUserData.trim()
    ? `cat > "$SK_DIR/user-data" <<'${marker}'\n${o.userUserData.replace(/\n?$/, "\n")}${marker}\nchmod +x "$SK_DIR/user-data"\nbash "$SK_DIR/user-data" || log "user-data exited with $?"\n`
    : "";
  return `#!/bin/bash
# spotkeep bootstrap: restore storage and network, run the user's user-data, start the agent.
set -u
log() { echo "[spotkeep-bootstrap] $*"; }
ROOT="\${SPOTKEEP_ROOT_DIR:-}"
SK_DIR="$ROOT/opt/spotkeep"
mkdir -p "$SK_DIR" "$ROOT/var/lib/spotkeep-agent"
export SPOTKEEP_COORDINATOR=${q(o.coordinatorWsUrl)}
export SPOTKEEP_STATE_DIR="\${SPOTKEEP_STATE_DIR:-$ROOT/var/lib/spotkeep-agent}"
${o.timeScale !== undefined && o.timeScale !== 1 ? `export SPOTKEEP_TIME_SCALE="\${SPOTKEEP_TIME_SCALE:-${o.timeScale}}"\n` : ""}AGENT="$SK_DIR/spotkeep-agent.js"
if [ -s /usr/local/lib/spotkeep/spotkeep-agent.js ] && [ -z "$ROOT" ]; then AGENT=/usr/local/lib/spotkeep/spotkeep-agent.js; fi
n=0
while [ ! -s "$AGENT" ]; do
  node -e 'const [u,f]=process.argv.slice(1);fetch(u).then(async r=>{if(!r.ok)throw new Error("HTTP "+r.status);require("fs").writeFileSync(f+".tmp",Buffer.from(await r.arrayBuffer()));require("fs").renameSync(f+".tmp",f)}).catch(e=>{console.error(e.message);process.exit(1)})' ${q(o.agentUrl)} "$AGENT" \\
    || curl -fsS -o "$AGENT" ${q(o.agentUrl)} || true
  n=$((n+1)); [ -s "$AGENT" ] && break
  [ $n -ge 60 ] && { log "cannot download the agent from ${o.agentUrl}"; exit 1; }
  sleep 1
done
log "restoring storage and network"
node "$AGENT" restore || { log "restore failed with $?"; exit 1; }
${userPart}if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  cat > /etc/systemd/system/spotkeep-agent.service <<UNIT
[Unit]
Description=spotkeep agent
After=network-online.target
[Service]
Environment=SPOTKEEP_COORDINATOR=$SPOTKEEP_COORDINATOR
Environment=SPOTKEEP_STATE_DIR=$SPOTKEEP_STATE_DIR
ExecStart=/usr/bin/env node $AGENT run
Restart=always
RestartSec=2
[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload && systemctl enable --now spotkeep-agent.service
else
  exec node "$AGENT" run
fi
`;
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(31, h) + s.charCodeAt(i)) | 0;
  return h;
}
