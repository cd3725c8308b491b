-- fieldtypes.lua: what Elasticsearch would index a field as, where that changes how KQL
-- compares (kql.lua). Kibana hands a query's values to Elasticsearch as text, and the
-- field's mapping decides: an ip field compares addresses (2001:0db8::1 is 2001:db8::1) and
-- takes CIDR blocks (10.0.0.0/8), a numeric field compares numbers (200.0 is 200, and so is
-- the string "200"), a date field compares instants (with date math: now-1d/d), a keyword
-- compares text exactly.
--
--   fieldtypes.kind(name) -> "ip" | "number" | "date" | "keyword" | "unknown"
--
-- The types are ECS's (ECS 9.5.0-dev, generated/csv/fields.csv of elastic/ecs, Apache License
-- 2.0): its ip fields, its numeric ones (long, integer, short, byte, float, double,
-- scaled_float, half_float, unsigned_long) and its dates (esdate.lua reads them). A field
-- under a root ECS or Elastic's AWS integration defines (source., aws., event., ...) and not
-- listed is a keyword for this purpose (keyword, wildcard, flattened, boolean: a boolean
-- compares as its text, true). A field under any other root is "unknown": the data
-- decides, as in Elastic's own KQL evaluator (detection-rules, lib/kql): a JSON number is a
-- number, and a string that is an IP address is an address when the query names a CIDR
-- block.

local M = {}

local function set(list)
  local s = {}
  for _, name in ipairs(list) do s[name] = true end
  return s
end

M.IP = set({
  "client.ip", "client.nat.ip", "destination.ip", "destination.nat.ip", "dns.resolved_ip", "host.ip",
  "host.target.ip", "network.forwarded_ip", "observer.ip", "orchestrator.resource.ip",
  "process.entry_leader.entry_meta.source.ip", "related.ip", "server.ip", "server.nat.ip", "source.ip",
  "source.nat.ip", "threat.enrichments.indicator.ip", "threat.indicator.ip",
})

M.NUMBER = set({
  "client.as.number", "client.bytes", "client.nat.port", "client.packets", "client.port", "container.cpu.usage",
  "container.disk.read.bytes", "container.disk.write.bytes", "container.memory.usage",
  "container.network.egress.bytes", "container.network.ingress.bytes", "destination.as.number", "destination.bytes",
  "destination.nat.port", "destination.packets", "destination.port", "dll.pe.go_imports_names_entropy",
  "dll.pe.go_imports_names_var_entropy", "dll.pe.imports_names_entropy", "dll.pe.imports_names_var_entropy",
  "dll.pe.sections.entropy", "dll.pe.sections.physical_size", "dll.pe.sections.var_entropy",
  "dll.pe.sections.virtual_size", "dns.answers.ttl", "email.attachments.file.size", "event.duration",
  "event.risk_score", "event.risk_score_norm", "event.sequence", "event.severity",
  "file.elf.go_imports_names_entropy", "file.elf.go_imports_names_var_entropy", "file.elf.header.entrypoint",
  "file.elf.imports_names_entropy", "file.elf.imports_names_var_entropy", "file.elf.sections.chi2",
  "file.elf.sections.entropy", "file.elf.sections.physical_size", "file.elf.sections.var_entropy",
  "file.elf.sections.virtual_address", "file.elf.sections.virtual_size", "file.macho.go_imports_names_entropy",
  "file.macho.go_imports_names_var_entropy", "file.macho.imports_names_entropy",
  "file.macho.imports_names_var_entropy", "file.macho.sections.entropy", "file.macho.sections.physical_size",
  "file.macho.sections.var_entropy", "file.macho.sections.virtual_size", "file.pe.go_imports_names_entropy",
  "file.pe.go_imports_names_var_entropy", "file.pe.imports_names_entropy", "file.pe.imports_names_var_entropy",
  "file.pe.sections.entropy", "file.pe.sections.physical_size", "file.pe.sections.var_entropy",
  "file.pe.sections.virtual_size", "file.size", "file.x509.public_key_exponent", "file.x509.public_key_size",
  "gen_ai.request.choice.count", "gen_ai.request.frequency_penalty", "gen_ai.request.max_tokens",
  "gen_ai.request.presence_penalty", "gen_ai.request.seed", "gen_ai.request.temperature", "gen_ai.request.top_k",
  "gen_ai.request.top_p", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "host.cpu.usage",
  "host.disk.read.bytes", "host.disk.write.bytes", "host.network.egress.bytes", "host.network.egress.packets",
  "host.network.ingress.bytes", "host.network.ingress.packets", "host.risk.calculated_score",
  "host.risk.calculated_score_norm", "host.risk.static_score", "host.risk.static_score_norm",
  "host.target.cpu.usage", "host.target.disk.read.bytes", "host.target.disk.write.bytes",
  "host.target.network.egress.bytes", "host.target.network.egress.packets", "host.target.network.ingress.bytes",
  "host.target.network.ingress.packets", "host.target.risk.calculated_score",
  "host.target.risk.calculated_score_norm", "host.target.risk.static_score", "host.target.risk.static_score_norm",
  "host.target.uptime", "host.uptime", "http.request.body.bytes", "http.request.bytes", "http.response.body.bytes",
  "http.response.bytes", "http.response.status_code", "log.origin.file.line", "log.syslog.facility.code",
  "log.syslog.priority", "log.syslog.severity.code", "network.bytes", "network.packets", "package.size",
  "process.args_count", "process.elf.go_imports_names_entropy", "process.elf.go_imports_names_var_entropy",
  "process.elf.header.entrypoint", "process.elf.imports_names_entropy", "process.elf.imports_names_var_entropy",
  "process.elf.sections.chi2", "process.elf.sections.entropy", "process.elf.sections.physical_size",
  "process.elf.sections.var_entropy", "process.elf.sections.virtual_address", "process.elf.sections.virtual_size",
  "process.entry_leader.args_count", "process.entry_leader.parent.pid",
  "process.entry_leader.parent.session_leader.pid", "process.entry_leader.parent.session_leader.vpid",
  "process.entry_leader.parent.vpid", "process.entry_leader.pid", "process.entry_leader.tty.char_device.major",
  "process.entry_leader.tty.char_device.minor", "process.entry_leader.vpid", "process.exit_code",
  "process.group_leader.args_count", "process.group_leader.pid", "process.group_leader.tty.char_device.major",
  "process.group_leader.tty.char_device.minor", "process.group_leader.vpid", "process.io.bytes_skipped.length",
  "process.io.bytes_skipped.offset", "process.io.total_bytes_captured", "process.io.total_bytes_skipped",
  "process.macho.go_imports_names_entropy", "process.macho.go_imports_names_var_entropy",
  "process.macho.imports_names_entropy", "process.macho.imports_names_var_entropy", "process.macho.sections.entropy",
  "process.macho.sections.physical_size", "process.macho.sections.var_entropy",
  "process.macho.sections.virtual_size", "process.parent.args_count", "process.parent.elf.go_imports_names_entropy",
  "process.parent.elf.go_imports_names_var_entropy", "process.parent.elf.header.entrypoint",
  "process.parent.elf.imports_names_entropy", "process.parent.elf.imports_names_var_entropy",
  "process.parent.elf.sections.chi2", "process.parent.elf.sections.entropy",
  "process.parent.elf.sections.physical_size", "process.parent.elf.sections.var_entropy",
  "process.parent.elf.sections.virtual_address", "process.parent.elf.sections.virtual_size",
  "process.parent.exit_code", "process.parent.group_leader.pid", "process.parent.group_leader.vpid",
  "process.parent.macho.go_imports_names_entropy", "process.parent.macho.go_imports_names_var_entropy",
  "process.parent.macho.imports_names_entropy", "process.parent.macho.imports_names_var_entropy",
  "process.parent.macho.sections.entropy", "process.parent.macho.sections.physical_size",
  "process.parent.macho.sections.var_entropy", "process.parent.macho.sections.virtual_size",
  "process.parent.pe.go_imports_names_entropy", "process.parent.pe.go_imports_names_var_entropy",
  "process.parent.pe.imports_names_entropy", "process.parent.pe.imports_names_var_entropy",
  "process.parent.pe.sections.entropy", "process.parent.pe.sections.physical_size",
  "process.parent.pe.sections.var_entropy", "process.parent.pe.sections.virtual_size", "process.parent.pid",
  "process.parent.thread.id", "process.parent.tty.char_device.major", "process.parent.tty.char_device.minor",
  "process.parent.uptime", "process.parent.vpid", "process.pe.go_imports_names_entropy",
  "process.pe.go_imports_names_var_entropy", "process.pe.imports_names_entropy",
  "process.pe.imports_names_var_entropy", "process.pe.sections.entropy", "process.pe.sections.physical_size",
  "process.pe.sections.var_entropy", "process.pe.sections.virtual_size", "process.pid",
  "process.previous.args_count", "process.session_leader.args_count", "process.session_leader.parent.pid",
  "process.session_leader.parent.session_leader.pid", "process.session_leader.parent.session_leader.vpid",
  "process.session_leader.parent.vpid", "process.session_leader.pid", "process.session_leader.tty.char_device.major",
  "process.session_leader.tty.char_device.minor", "process.session_leader.vpid", "process.thread.id",
  "process.tty.char_device.major", "process.tty.char_device.minor", "process.tty.columns", "process.tty.rows",
  "process.uptime", "process.vpid", "server.as.number", "server.bytes", "server.nat.port", "server.packets",
  "server.port", "source.as.number", "source.bytes", "source.nat.port", "source.packets", "source.port",
  "threat.enrichments.indicator.as.number", "threat.enrichments.indicator.file.elf.go_imports_names_entropy",
  "threat.enrichments.indicator.file.elf.go_imports_names_var_entropy",
  "threat.enrichments.indicator.file.elf.header.entrypoint",
  "threat.enrichments.indicator.file.elf.imports_names_entropy",
  "threat.enrichments.indicator.file.elf.imports_names_var_entropy",
  "threat.enrichments.indicator.file.elf.sections.chi2", "threat.enrichments.indicator.file.elf.sections.entropy",
  "threat.enrichments.indicator.file.elf.sections.physical_size",
  "threat.enrichments.indicator.file.elf.sections.var_entropy",
  "threat.enrichments.indicator.file.elf.sections.virtual_address",
  "threat.enrichments.indicator.file.elf.sections.virtual_size",
  "threat.enrichments.indicator.file.pe.go_imports_names_entropy",
  "threat.enrichments.indicator.file.pe.go_imports_names_var_entropy",
  "threat.enrichments.indicator.file.pe.imports_names_entropy",
  "threat.enrichments.indicator.file.pe.imports_names_var_entropy",
  "threat.enrichments.indicator.file.pe.sections.entropy",
  "threat.enrichments.indicator.file.pe.sections.physical_size",
  "threat.enrichments.indicator.file.pe.sections.var_entropy",
  "threat.enrichments.indicator.file.pe.sections.virtual_size", "threat.enrichments.indicator.file.size",
  "threat.enrichments.indicator.file.x509.public_key_exponent",
  "threat.enrichments.indicator.file.x509.public_key_size", "threat.enrichments.indicator.port",
  "threat.enrichments.indicator.scanner_stats", "threat.enrichments.indicator.sightings",
  "threat.enrichments.indicator.url.port", "threat.enrichments.indicator.x509.public_key_exponent",
  "threat.enrichments.indicator.x509.public_key_size", "threat.indicator.as.number",
  "threat.indicator.file.elf.go_imports_names_entropy", "threat.indicator.file.elf.go_imports_names_var_entropy",
  "threat.indicator.file.elf.header.entrypoint", "threat.indicator.file.elf.imports_names_entropy",
  "threat.indicator.file.elf.imports_names_var_entropy", "threat.indicator.file.elf.sections.chi2",
  "threat.indicator.file.elf.sections.entropy", "threat.indicator.file.elf.sections.physical_size",
  "threat.indicator.file.elf.sections.var_entropy", "threat.indicator.file.elf.sections.virtual_address",
  "threat.indicator.file.elf.sections.virtual_size", "threat.indicator.file.pe.go_imports_names_entropy",
  "threat.indicator.file.pe.go_imports_names_var_entropy", "threat.indicator.file.pe.imports_names_entropy",
  "threat.indicator.file.pe.imports_names_var_entropy", "threat.indicator.file.pe.sections.entropy",
  "threat.indicator.file.pe.sections.physical_size", "threat.indicator.file.pe.sections.var_entropy",
  "threat.indicator.file.pe.sections.virtual_size", "threat.indicator.file.size",
  "threat.indicator.file.x509.public_key_exponent", "threat.indicator.file.x509.public_key_size",
  "threat.indicator.port", "threat.indicator.scanner_stats", "threat.indicator.sightings",
  "threat.indicator.url.port", "threat.indicator.x509.public_key_exponent", "threat.indicator.x509.public_key_size",
  "tls.client.x509.public_key_exponent", "tls.client.x509.public_key_size", "tls.server.x509.public_key_exponent",
  "tls.server.x509.public_key_size", "url.port", "user.changes.risk.calculated_score",
  "user.changes.risk.calculated_score_norm", "user.changes.risk.static_score", "user.changes.risk.static_score_norm",
  "user.effective.risk.calculated_score", "user.effective.risk.calculated_score_norm",
  "user.effective.risk.static_score", "user.effective.risk.static_score_norm", "user.risk.calculated_score",
  "user.risk.calculated_score_norm", "user.risk.static_score", "user.risk.static_score_norm",
  "user.target.risk.calculated_score", "user.target.risk.calculated_score_norm", "user.target.risk.static_score",
  "user.target.risk.static_score_norm", "volume.size", "vulnerability.score.base",
  "vulnerability.score.environmental", "vulnerability.score.temporal",
})

-- ECS's date fields, and the AWS integration's (its CloudTrail fields.yml).
M.DATE = set({
  "@timestamp", "cloud.entity.last_seen_timestamp", "cloud.entity.lifecycle.last_activity",
  "cloud.origin.entity.last_seen_timestamp", "cloud.origin.entity.lifecycle.last_activity",
  "cloud.target.entity.last_seen_timestamp", "cloud.target.entity.lifecycle.last_activity",
  "dll.code_signature.timestamp", "email.delivery_timestamp", "email.origination_timestamp",
  "entity.last_seen_timestamp", "entity.lifecycle.last_activity", "entity.target.last_seen_timestamp",
  "entity.target.lifecycle.last_activity", "event.created", "event.end", "event.ingested", "event.start",
  "file.accessed", "file.code_signature.timestamp", "file.created", "file.ctime", "file.elf.creation_date",
  "file.mtime", "file.x509.not_after", "file.x509.not_before", "host.entity.last_seen_timestamp",
  "host.entity.lifecycle.last_activity", "host.target.entity.last_seen_timestamp",
  "host.target.entity.lifecycle.last_activity", "orchestrator.entity.last_seen_timestamp",
  "orchestrator.entity.lifecycle.last_activity", "package.installed", "process.code_signature.timestamp",
  "process.elf.creation_date", "process.end", "process.entry_leader.parent.session_leader.start",
  "process.entry_leader.parent.start", "process.entry_leader.start", "process.group_leader.start",
  "process.parent.code_signature.timestamp", "process.parent.elf.creation_date", "process.parent.end",
  "process.parent.group_leader.start", "process.parent.start", "process.session_leader.parent.session_leader.start",
  "process.session_leader.parent.start", "process.session_leader.start", "process.start",
  "service.entity.last_seen_timestamp", "service.entity.lifecycle.last_activity",
  "service.origin.entity.last_seen_timestamp", "service.origin.entity.lifecycle.last_activity",
  "service.target.entity.last_seen_timestamp", "service.target.entity.lifecycle.last_activity",
  "threat.enrichments.indicator.file.accessed", "threat.enrichments.indicator.file.code_signature.timestamp",
  "threat.enrichments.indicator.file.created", "threat.enrichments.indicator.file.ctime",
  "threat.enrichments.indicator.file.elf.creation_date", "threat.enrichments.indicator.file.mtime",
  "threat.enrichments.indicator.file.x509.not_after", "threat.enrichments.indicator.file.x509.not_before",
  "threat.enrichments.indicator.first_seen", "threat.enrichments.indicator.last_seen",
  "threat.enrichments.indicator.modified_at", "threat.enrichments.indicator.x509.not_after",
  "threat.enrichments.indicator.x509.not_before", "threat.enrichments.matched.occurred",
  "threat.indicator.file.accessed", "threat.indicator.file.code_signature.timestamp",
  "threat.indicator.file.created", "threat.indicator.file.ctime", "threat.indicator.file.elf.creation_date",
  "threat.indicator.file.mtime", "threat.indicator.file.x509.not_after", "threat.indicator.file.x509.not_before",
  "threat.indicator.first_seen", "threat.indicator.last_seen", "threat.indicator.modified_at",
  "threat.indicator.x509.not_after", "threat.indicator.x509.not_before", "tls.client.not_after",
  "tls.client.not_before", "tls.client.x509.not_after", "tls.client.x509.not_before", "tls.server.not_after",
  "tls.server.not_before", "tls.server.x509.not_after", "tls.server.x509.not_before",
  "user.changes.entity.last_seen_timestamp", "user.changes.entity.lifecycle.last_activity",
  "user.effective.entity.last_seen_timestamp", "user.effective.entity.lifecycle.last_activity",
  "user.entity.last_seen_timestamp", "user.entity.lifecycle.last_activity", "user.target.entity.last_seen_timestamp",
  "user.target.entity.lifecycle.last_activity",
  "aws.cloudtrail.user_identity.session_context.creation_date",
})

-- Roots whose fields are typed above or are keywords: ECS's field sets and top-level fields,
-- and those Elastic's AWS integration adds (aws.*, and the entity fields of CloudTrail).
M.ROOTS = set({
  "@timestamp", "agent", "client", "cloud", "container", "data_stream", "destination", "device", "dll", "dns", "ecs",
  "email", "entity", "error", "event", "faas", "file", "gen_ai", "group", "host", "http", "labels", "log", "message",
  "network", "observer", "orchestrator", "organization", "package", "process", "registry", "related", "rule",
  "server", "service", "source", "span", "tags", "threat", "tls", "trace", "transaction", "url", "user",
  "user_agent", "volume", "vulnerability",
  "aws", "actor", "target",
})

-- Names come from events too (every field, for a value with no field): the cache is
-- emptied when it grows large.
local cache, cached = {}, 0

function M.kind(name)
  local k = cache[name]
  if k then return k end
  if M.IP[name] then
    k = "ip"
  elseif M.NUMBER[name] then
    k = "number"
  elseif M.DATE[name] then
    k = "date"
  elseif M.ROOTS[name:match("^[^.]*")] then
    k = "keyword"
  else
    k = "unknown"
  end
  if cached >= 4096 then cache, cached = {}, 0 end
  cache[name], cached = k, cached + 1
  return k
end

return M
