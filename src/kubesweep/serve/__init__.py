"""`kubesweep serve`: an HTTP API and a live page over the same library the CLI calls.

No database: the cluster, the journals (results/<exp>/trials.jsonl) and the plan indexes
(jobs/<exp>/plan.json) are the state; the server's own state directory only remembers which
sweeps it drives and the bodies submitted. One concern per module:

    config.py        ServeConfig: workspace, cluster, state directory, bind address, tokens
    auth.py          the tokens file, callers, the reader/writer dependencies, the Host check
    events.py        Broker: events from sweep threads to server-sent-event subscribers
    store.py         experiments and trials read from the workspace, merged with live rows
    routes_read.py   the GET routes of the API
    runs.py          Manager: the sweeps this server drives (forms.py, routes_write.py: submitting)
    page.py          the page (static/: its JavaScript and CSS)
    app.py           create_app: the FastAPI application
"""
