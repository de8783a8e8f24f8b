# Tasks for envc. `just --list` shows them; CI runs `just test` through `.ci/run`.

set shell := ["bash", "-euo", "pipefail", "-c"]

registry := "127.0.0.1:5000"

# List the recipes.
default:
    @just --list

# Install the system packages envc and its tests use (apt, as root).
setup:
    scripts/setup.sh

# Start the loopback registry and push the base images the examples and tests use.
registry:
    scripts/registry.sh start
    scripts/seed-base-images.sh

# Stop the loopback registry.
registry-stop:
    scripts/registry.sh stop

# Start Docker 26's BuildKit (unpacked from Debian trixie) on its own socket, for --engine buildkit.
buildkit:
    scripts/buildkit.sh start

# Stop the BuildKit daemon `just buildkit` started.
buildkit-stop:
    scripts/buildkit.sh stop

# Build the example project with the embedded engine and push it to the loopback registry.
demo: registry
    cargo run --release --quiet -- build examples/hello --tag hello:latest \
        --push {{registry}}/envc-demo/hello:latest

# Formatting and lints, as CI runs them.
check:
    cargo fmt --all --check
    cargo clippy --all-targets --quiet -- -D warnings

# Every test tier: unit, snapshot and integration tests against runc, the registry and BuildKit.
test: check registry buildkit
    cargo test --all-targets --no-fail-fast

# Only the fast tests that need no root, runc or registry.
test-unit:
    cargo test --lib

# envc against the devcontainers CLI and a Dockerfile through buildx (writes BENCHMARKS.md, needs
# root), then the criterion micro-benchmarks.
bench:
    scripts/bench/run.sh
    cargo bench

# Only the criterion micro-benchmarks in benches/.
bench-micro:
    cargo bench
