"""spark-submit entry of ``riskmodel score --engine spark``: the command line's ``score``,
run in the Spark session spark-submit made (its master, executors and resources). No logic
lives here; see pipelines/spark-submit.example.sh and docs/scoring.md.

    spark-submit --master local[2] pipelines/spark_score.py data/book --out data/scores
"""

import sys

from riskmodel.cli import app

if __name__ == "__main__":
    app(["score", *sys.argv[1:], "--engine", "spark"], prog_name="riskmodel score")
