// Validates Strimzi custom resources against the schemas of Strimzi's own CRDs, as compiled
// by @kubernetes-models/strimzi-kafka-operator. Reads a JSON array of objects on stdin and
// prints one JSON line per object: {"index", "kind", "name", "ok", "error"}.
import { readFileSync } from "node:fs";

const models = {
  "kafka.strimzi.io/v1beta2/KafkaTopic": "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaTopic",
  "kafka.strimzi.io/v1/KafkaTopic": "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1/KafkaTopic",
};

const docs = JSON.parse(readFileSync(0, "utf8"));
for (const [index, doc] of docs.entries()) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const result = { index, kind: doc.kind, name: doc.metadata?.name ?? null, ok: false, error: null };
  if (!(key in models)) {
    result.error = `no Strimzi model for ${key}`;
  } else {
    const mod = await import(models[key]);
    try {
      new mod[doc.kind](doc).validate();
      result.ok = true;
    } catch (err) {
      result.error = String(err.message ?? err);
    }
  }
  console.log(JSON.stringify(result));
}
