#!/bin/sh
# Creates Earshot's topics when they are missing and applies their settings, with Apache
# Kafka's own tools. Safe to run again: existing topics keep their partitions and get the
# settings re-applied (partitions are only ever raised by hand, since that moves keys).
#
# Settings come from the environment (ConfigMap earshot-topics, Secret earshot-kafka):
#   KAFKA_BOOTSTRAP_SERVERS      brokers
#   TOPICS                       data topics (delete policy), space-separated
#   COMPACTED_TOPICS             checkpoint and state topics (compact policy), space-separated
#   TOPIC_PARTITIONS, TOPIC_REPLICATION_FACTOR, MIN_INSYNC_REPLICAS
#   RETENTION_MS                 retention of the data topics
#   DEADLETTER_TOPIC, DEADLETTER_RETENTION_MS
#   MAX_MESSAGE_BYTES            at least Earshot's kafka.max_message_bytes + 64 KiB
#   KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,
#   KAFKA_CA_FILE                optional: TLS and SASL, as the services use them
set -eu

KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
props="${TMPDIR:-/tmp}/earshot-topics-client.properties"
umask 077
: >"$props"
if [ -n "${KAFKA_SECURITY_PROTOCOL:-}" ]; then
  echo "security.protocol=$KAFKA_SECURITY_PROTOCOL" >>"$props"
fi
if [ -n "${KAFKA_SASL_MECHANISM:-}" ]; then
  case "$KAFKA_SASL_MECHANISM" in
    SCRAM-SHA-256 | SCRAM-SHA-512) module=org.apache.kafka.common.security.scram.ScramLoginModule ;;
    PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;;
    *) echo "create-topics: unsupported KAFKA_SASL_MECHANISM $KAFKA_SASL_MECHANISM" >&2; exit 64 ;;
  esac
  echo "sasl.mechanism=$KAFKA_SASL_MECHANISM" >>"$props"
  echo "sasl.jaas.config=$module required username=\"$KAFKA_SASL_USERNAME\" password=\"$KAFKA_SASL_PASSWORD\";" >>"$props"
fi
if [ -n "${KAFKA_CA_FILE:-}" ]; then
  printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$KAFKA_CA_FILE" >>"$props"
fi

# provision TOPIC POLICY RETENTION_MS
provision() {
  settings="cleanup.policy=$2,min.insync.replicas=$MIN_INSYNC_REPLICAS,max.message.bytes=$MAX_MESSAGE_BYTES"
  if [ "$2" = delete ]; then settings="$settings,retention.ms=$3"; fi
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" \
    --command-config "$props" --create --if-not-exists --topic "$1" \
    --partitions "$TOPIC_PARTITIONS" --replication-factor "$TOPIC_REPLICATION_FACTOR"
  "$KAFKA_BIN/kafka-configs.sh" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" \
    --command-config "$props" --alter --entity-type topics --entity-name "$1" \
    --add-config "$settings"
  echo "create-topics: $1 ($settings)"
}

for topic in $TOPICS; do
  if [ "$topic" = "${DEADLETTER_TOPIC:-}" ]; then
    provision "$topic" delete "$DEADLETTER_RETENTION_MS"
  else
    provision "$topic" delete "$RETENTION_MS"
  fi
done
for topic in ${COMPACTED_TOPICS:-}; do
  provision "$topic" compact ""
done
