#!/usr/bin/env bash
# Score a whole book on a Spark cluster (an example: adapt the master, the resources and the
# paths). The book, the output folder and the Python environment with riskmodel installed
# must be visible at the same paths on the driver and every executor (a shared mount such as
# NFS); executors read the book's buckets and write their parts of the output there.
set -euo pipefail

BOOK=${BOOK:-/shared/riskmodel/books/2024-12}
OUT=${OUT:-/shared/riskmodel/scores/2024-12-31}
PYTHON=${PYTHON:-/shared/riskmodel/.venv/bin/python}

# one task per bucket and one core per task: the executors' cores are the parallelism
PYSPARK_PYTHON="$PYTHON" PYSPARK_DRIVER_PYTHON="$PYTHON" \
spark-submit \
  --master "${MASTER:-yarn}" \
  --deploy-mode client \
  --num-executors "${EXECUTORS:-10}" \
  --executor-cores "${EXECUTOR_CORES:-4}" \
  --executor-memory "${EXECUTOR_MEMORY:-8g}" \
  --conf spark.task.cpus=1 \
  --conf spark.executorEnv.PYSPARK_PYTHON="$PYTHON" \
  pipelines/spark_score.py "$BOOK" \
    --as-of "${AS_OF:-2024-12-31}" \
    --model "${MODEL:-models:/buyer-risk@champion}" \
    --explain 3 \
    --out "$OUT"
