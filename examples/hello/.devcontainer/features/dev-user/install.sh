#!/bin/sh
set -eu
USERNAME="${USERNAME:-dev}"
USER_UID="${UID:-1000}"

if getent passwd "${USERNAME}" >/dev/null; then
    echo "dev-user: ${USERNAME} exists"
    exit 0
fi
echo "dev-user: creating ${USERNAME} with uid ${USER_UID}"
groupadd --gid "${USER_UID}" "${USERNAME}"
useradd --uid "${USER_UID}" --gid "${USER_UID}" --create-home --shell /bin/bash "${USERNAME}"
