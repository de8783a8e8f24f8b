#!/bin/sh
set -eu
PROJECT="${PROJECT:-envc}"
cat > /etc/profile.d/shell-prompt.sh <<RC
PS1='(${PROJECT}) \\u:\\w\\$ '
RC
if ! grep -q shell-prompt /etc/bash.bashrc 2>/dev/null; then
    echo '. /etc/profile.d/shell-prompt.sh  # shell-prompt' >> /etc/bash.bashrc
fi
echo "shell-prompt: prompt set for ${PROJECT}"
