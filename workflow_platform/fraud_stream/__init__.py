"""Real-time fraud scoring: a long-running Pathway pipeline from NATS JetStream to alerts (issue 15).

Its own process (`python -m workflow_platform.fraud_stream`): reads transactions from `transactions.new`,
computes the handbook's window features with the training's code (`workflow_platform.fraud.features`) against
the recent history it keeps, scores each transaction with the latest stored model, writes one `fraud.alerts`
message per alert (deduplicated by transaction id) and every score to `orchestrator.transactions` (keyed
upsert). Delayed fraud labels (`fraud.feedback`) count in the terminal-risk windows of the transactions
featured after them and reach `orchestrator.transactions.tx_fraud`. Pathway persistence, checkpointed to the
object store (or a directory), makes a restart resume where the pipeline stopped, on any host. A model newly
promoted by the training workflow is used within `--model-check-seconds`.

Limits of this first slice: Pathway's input snapshot keeps every transaction read, and a restart replays them
all to rebuild the history (not only the last 37 days); the history is keyed by transaction id, so a pipeline
reads one source's transactions; a restart's replay scores the snapshot's transactions again knowing every
label read before the restart, so the scores it rewrites may differ from the first ones; nothing starts it yet
(`wfp up`, the embedded stack, docker-compose), and Dagster does not watch it.

    __main__.py      the command line: options, logging, signals
    options.py       StreamOptions: the services (ServiceSettings) and the pipeline's own settings
    streams.py       the JetStream streams, created if missing
    dataflow.py      the Pathway dataflow: reader, batched scoring UDF, alerts and scores outputs
    feedback.py      the delayed labels' reader, merged with the transactions for the scorer
    scorer.py        a tick's rows -> features and scores, vectorised
    history.py       the recent transactions the windows reach, their labels, and the features of new ones
    latest_model.py  the model `models/fraud/latest.json` names, looked up again every few seconds
    scores_sink.py   the scores' upsert into orchestrator.transactions, once per tick
    labels_sink.py   the delayed labels' update of orchestrator.transactions.tx_fraud, once per tick
    persistence.py   where the checkpoints live (object store or directory); forgetting them for a replay
"""
