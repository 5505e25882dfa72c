#!/usr/bin/env bash
# Prepares the lab (idempotent): Keycloak from Maven Central unpacked under .lab/, and the local
# Kafka broker up. The services are built by `make lab-build`; `make lab` runs both, then the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
KC_VERSION="${KC_VERSION:-26.5.6}"
home=".lab/keycloak-$KC_VERSION"
zip=".lab/dl/keycloak-quarkus-dist-$KC_VERSION.zip"
if [ ! -x "$home/bin/kc.sh" ]; then
  mkdir -p .lab/dl
  if [ ! -f "$zip" ]; then
    echo "lab-up: fetching org.keycloak:keycloak-quarkus-dist:$KC_VERSION:zip from Maven Central"
    mvn -q -B -Dstyle.color=never dependency:copy \
      "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KC_VERSION:zip" "-DoutputDirectory=$PWD/.lab/dl"
  fi
  unzip -q -o "$zip" -d .lab
fi
scripts/lab-down.sh   # anything a killed run left (its Keycloak would hold the H2 database's lock)
scripts/kafka-up.sh
