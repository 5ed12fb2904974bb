"""Real-time fraud scoring: a long-running Pathway pipeline from NATS JetStream to alerts (issue 15).

Two processes. The supervisor (`python -m workflow_platform.fraud_stream`, no Pathway: the embedded stack, `wfp up`
and docker-compose's fraud-stream service run it) obeys the control bucket in NATS
(`resources/fraud_stream_control.py`: run, stop, replay from an instant), reports its status there every few
seconds, and runs the pipeline as its child (`python -m workflow_platform.fraud_stream.pipeline`, which also
runs alone) once a model is stored. The pipeline reads transactions from `transactions.new`, computes the
handbook's window features with the training's code (`workflow_platform.fraud.features`) against the recent
history it keeps, scores each transaction with the latest stored model, writes one `fraud.alerts` message per
alert (deduplicated by transaction id) and every score to `orchestrator.transactions` (keyed upsert). Delayed
fraud labels (`fraud.feedback`) count in the terminal-risk windows of the transactions featured after them and
reach `orchestrator.transactions.tx_fraud`. Pathway persistence, checkpointed to the object store (or a
directory), makes a restart resume where the pipeline stopped. A model newly promoted by the training workflow
is used within `--model-check-seconds`.

Limits: Pathway's input snapshot keeps every transaction read since the last replay, and a restart replays them
all to rebuild the history (not only the last 37 days); the history is keyed by transaction id, so a pipeline
reads one source's transactions; a replay re-reads the messages published since its instant minus the windows'
reach (publication time: transactions published long after they happened are re-read from further back, none
is missed), and an alert re-published more than the alerts stream's duplicate window (a day) after the first
is stored again; a restart scores the snapshot's transactions again knowing every label read before it, so
the scores it rewrites may differ from the first ones.

    __main__.py      the supervisor's command line: options, signals
    supervisor.py    the supervisor's beat: apply commands, keep the pipeline as desired, write the status
    child.py         the pipeline as the supervisor's child: started, stopped, never orphaned (PR_SET_PDEATHSIG)
    pipeline.py      the pipeline's command line: options (--emit-from), logging, signals
    run.py           the pipeline: streams and model first, then the dataflow under pw.run
    options.py       StreamOptions: the services (ServiceSettings) and the pipeline's own settings; the options
    streams.py       the JetStream streams, created if missing; the durable consumer, rewound or replayed
    dataflow.py      the Pathway dataflow: reader, batched scoring UDF, alerts and scores outputs
    feedback.py      the delayed labels' reader, merged with the transactions for the scorer
    scorer.py        a tick's rows -> features and scores, vectorised
    history.py       the recent transactions the windows reach, their labels, and the features of new ones
    latest_model.py  the model `models/fraud/latest.json` names, looked up again every few seconds
    scores_sink.py   the scores' upsert into orchestrator.transactions, once per tick (COPY, then one INSERT)
    labels_sink.py   the delayed labels' update of orchestrator.transactions.tx_fraud, once per tick
    tick_writer.py   the sinks' PostgreSQL connection, on a thread of its own: each tick in one transaction
    persistence.py   where the checkpoints live (object store or directory), one pipeline on them at a time;
                     forgetting them for a replay
"""
