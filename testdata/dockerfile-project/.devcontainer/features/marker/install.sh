#!/bin/sh
set -eu
test -x /usr/local/bin/greet
cp /opt/tools/version /etc/marker
