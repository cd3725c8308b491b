-- An example configuration for `trailhound run --config FILE` (examples/trailhound.service).
-- Every option of run has a key here: the option without its dashes, '-' written '_'.
return {
  -- The rules: the installed ones, or a folder of your own.
  rules = "/usr/local/share/trailhound/rules",
  -- What to follow: files, folders (every file in them) and globs.
  paths = { "/var/log/cloudtrail" },
  exclude = { "*.tmp" },
  -- Where each file's progress is kept.
  state = "/var/lib/trailhound/state",
  -- Where alerts go; each output gets every alert. A table carries an output's options:
  -- headers, user and password (basic), bearer, ca_file, insecure, timeout,
  -- connect_timeout, facility and app_name (syslog).
  outputs = {
    "file:/var/log/trailhound/alerts.ndjson",
    -- { "elasticsearch:https://es.internal:9200/alerts-aws", user = "trailhound", password = "...",
    --   ca_file = "/etc/trailhound/es-ca.pem" },
    -- { "http://collector.internal/alerts", headers = { "X-Team: detection" }, bearer = "..." },
    -- "syslog",
  },
  stats_interval = "10m",
  -- Prometheus metrics at http://127.0.0.1:9464/metrics (loopback only: no authentication).
  -- metrics = "127.0.0.1:9464",
  -- Every alert written, whatever a rule's max_signals says (suppression and duplicates apply).
  -- no_max_signals = true,
}
