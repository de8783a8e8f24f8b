#!/bin/sh
set -eu
GREETING="${GREETING:-Hello}"
if [ "${SHOUT:-false}" = "true" ]; then
    GREETING=$(printf '%s' "${GREETING}" | tr '[:lower:]' '[:upper:]')
fi

mkdir -p "${HELLO_HOME}/bin"
printf '%s\n' "${GREETING}" > "${HELLO_HOME}/greeting"
cat > "${HELLO_HOME}/bin/hello" <<'SCRIPT'
#!/bin/sh
echo "$(cat "${HELLO_HOME:-/usr/local/share/hello}/greeting"), $(id -un)!"
SCRIPT
chmod 0755 "${HELLO_HOME}/bin/hello"
echo "hello-tool: installed with greeting '${GREETING}' for ${_REMOTE_USER} (home ${_REMOTE_USER_HOME:-unknown})"
