#!/bin/sh
set -eu
# The Dockerfile stage must be below this layer.
test -f /etc/greeting
mkdir -p "$GREETER_HOME"
cat > /usr/local/bin/greet <<SCRIPT
#!/bin/sh
echo "\$(cat /etc/greeting), ${NAME}"
SCRIPT
chmod 0755 /usr/local/bin/greet
