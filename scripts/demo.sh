#!/usr/bin/env bash
# The peoplelog walk-through: a throwaway home, the embedded PostgreSQL, a few people.
set -euo pipefail

BIN="${BIN:-.venv/bin}"
PEOPLELOG_HOME="$(mktemp -d -t peoplelog-demo.XXXXXX)"
export PEOPLELOG_HOME
unset PEOPLELOG_DATABASE_URL DATABASE_URL PEOPLELOG_KEYRING PEOPLELOG_KEYRING_JSON
trap 'rm -rf "$PEOPLELOG_HOME"' EXIT

pl() { echo "+ peoplelog $*" >&2; "$BIN/peoplelog" "$@"; }
field() { "$BIN/python" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

echo "== embedded PostgreSQL under $PEOPLELOG_HOME"
pl init

echo; echo "== create two people"
ada=$(printf 'correct horse battery\n' | pl person create --email Ada@Example.ORG \
      --name "Ada Lovelace" --password-stdin --actor signup --reason "self sign-up" --json \
      | field person_id)
grace=$(pl person create --email grace@navy.example --name "Grace Hopper" --actor import \
        --json | field person_id)
echo "ada=$ada grace=$grace"

echo; echo "== change them: verify, rename (optimistic), change email"
pl person update "$ada" --verified --actor mailer --reason "confirmation link clicked"
pl person update "$ada" --name "Augusta Ada King" --expect-version 1 --actor support \
   --reason "name change request #42"
echo "-- a stale writer is refused (exit 4), nothing written:"
pl person update "$ada" --name "Stale" --expect-version 0 || echo "   exit code $?"
pl person update "$grace" --email grace.hopper@navy.example --actor grace --reason "new address"

echo; echo "== read"
pl person show "$ada"
pl person show "$ada" --version 0
pl person history "$ada"
echo "-- lookup is case-insensitive on the domain:"
pl person find --email ada@EXAMPLE.org

echo; echo "== erase Grace (crypto-shredding)"
pl person erase "$grace" --actor dpo --reason "erasure request"
pl person show "$grace"
pl person find --email grace.hopper@navy.example || echo "   exit code $? (not found)"

echo; echo "== accounts: sign up, confirm by mail, log in, stay logged in"
export PEOPLELOG_SMTP_URL="file://$PEOPLELOG_HOME/mail"   # a real server: smtp://host:port
link_token() {  # the token of the newest link mailed to $1 (the demo's mail is files)
  grep -l "^To: $1" "$PEOPLELOG_HOME"/mail/*.eml | sort | tail -1 \
    | xargs grep -o 'token=plo1_[A-Za-z0-9_-]*' | tail -1 | cut -d= -f2
}
linus=$(printf 'correct horse battery staple\n' | pl account register \
   --email linus@example.org --name "Linus" --password-stdin)
echo "registered $linus"
token=$(printf 'correct horse battery staple\n' | pl account login \
   --email linus@example.org --password-stdin --label laptop --json | field token)
printf '%s\n' "$token" | pl account request-confirmation
pl mail send-pending
printf '%s\n' "$(link_token linus@example.org)" | pl account confirm
second=$(printf 'correct horse battery staple\n' | pl account login \
   --email linus@example.org --password-stdin --label phone --json | field token)
echo "-- two sessions (tokens printed once, kept by the client; the database has digests):"
pl session list "$linus"
printf '%s\n' "$token" | pl session check
echo "-- a wrong password: one opaque answer, exit 6"
printf 'wrong horse battery staple\n' | pl account login --email linus@example.org \
   --password-stdin || echo "   exit code $?"
echo "-- a reset by link ends both sessions, in the version's own transaction:"
pl account request-reset --email linus@example.org
pl account request-reset --email nobody@example.org   # the same answer, no mail
pl mail send-pending
printf '%s\nanother horse battery staple\n' "$(link_token linus@example.org)" \
   | pl account reset
printf '%s\n' "$token" | pl session check || echo "   exit code $? (session ended)"
printf '%s\n' "$second" | pl session check || echo "   exit code $? (session ended)"
printf 'another horse battery staple\n' | pl account login --email linus@example.org \
   --password-stdin > /dev/null && echo "-- the new password logs in"
pl person history "$linus"
echo "-- the security log: every login, failure, link and session ended (IP and user agent"
echo "   encrypted under Linus's key; the failed login of nobody@ names nobody)"
pl events --person "$linus"

echo; echo "== the auditor: a signed checkpoint kept outside the database"
AUDIT="$PEOPLELOG_HOME/auditor"; mkdir -p "$AUDIT"
pl keys public > "$AUDIT/verifier.key"
pl checkpoint --out "$AUDIT/held.txt"
pl person update "$ada" --name "Ada, Countess of Lovelace" --actor support --reason "ticket #43"
pl checkpoint > /dev/null

echo "-- verify without keys: chains, log, and consistency with the held checkpoint"
PEOPLELOG_KEYRING=/nonexistent pl verify --checkpoint "$AUDIT/held.txt" \
   --key "$AUDIT/verifier.key" --save-checkpoint "$AUDIT/held.txt"

echo "-- an inclusion proof, checked offline with only the public key"
pl prove "$ada" --version 0 --out "$AUDIT/proof.json" > /dev/null
pl verify-proof "$AUDIT/proof.json" --key "$AUDIT/verifier.key"

echo "-- the ledger as stored, verified with no database"
pl export --out "$AUDIT/ledger.jsonl"
pl verify --from-export "$AUDIT/ledger.jsonl" --checkpoint "$AUDIT/held.txt" \
   --key "$AUDIT/verifier.key"
echo; echo "== the HTTP service: any backend, any language (peoplelog serve, uvicorn)"
PORT=$("$BIN/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
BASE="http://127.0.0.1:$PORT"
"$BIN/peoplelog" serve --port "$PORT" --insecure-cookies 2> "$PEOPLELOG_HOME/serve.log" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; rm -rf "$PEOPLELOG_HOME"' EXIT
for _ in $(seq 1 120); do curl -fs "$BASE/ready" > /dev/null && break; sleep 0.5; done
show() { echo "+ curl $*" >&2; curl -s "$@"; echo; }
echo "-- sign up (202 whether or not the address was taken: nobody learns who is registered)"
show -X POST "$BASE/v1/accounts" -H 'content-type: application/json' \
     -d '{"email": "margaret@example.org", "password": "correct horse battery staple", "name": "Margaret"}'
echo "-- the password becomes the account's when the mailed link is used with it"
pl mail send-pending > /dev/null
show -X POST "$BASE/v1/email-confirmations" -H 'content-type: application/json' \
     -d "{\"token\": \"$(link_token margaret@example.org)\", \"password\": \"correct horse battery staple\"}" \
     -o /dev/null -w '%{http_code}'
echo "-- log in, ask who we are, log out"
token=$(curl -s -X POST "$BASE/v1/sessions" -H 'content-type: application/json' \
     -d '{"email": "margaret@example.org", "password": "correct horse battery staple"}' | field token)
show "$BASE/v1/me" -H "Authorization: Bearer $token"
show -X DELETE "$BASE/v1/sessions/current" -H "Authorization: Bearer $token" -o /dev/null -w '%{http_code}'
echo "-- the ended session is refused with an RFC 9457 problem document"
show "$BASE/v1/me" -H "Authorization: Bearer $token"
echo "-- a service's API key (hashed at rest, permissions named) reads a person's history"
key=$(pl api-key create support-desk --permission people:read --json | field token)
history=$(show "$BASE/v1/people/$ada/history" -H "Authorization: Bearer $key")
echo "${history:0:400} ..."
echo
echo "pages: $BASE/register  $BASE/login  $BASE/settings   API: $BASE/docs  $BASE/openapi.json"
if [ -n "${DEMO_KEEP_SERVING:-}" ]; then
  echo "serving until Ctrl-C"; wait "$SERVER"
else
  echo "(the server stops with the demo; DEMO_KEEP_SERVING=1 make demo keeps it up)"
fi
echo; echo "demo finished: all good"
