# bash completion for trailhound (installed by make install)
_trailhound() {
  local cur prev words cword
  _init_completion || return
  local commands="run replay test check explain show new dev import export help"
  if [[ $cword -eq 1 ]]; then
    COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
    return
  fi
  local cmd=${words[1]}
  case $prev in
    --config|--state) _filedir; return ;;
    --geoip-asn|--geoip-city) _filedir mmdb; return ;;
    --rules|--out) _filedir -d; return ;;
    --output) COMPREPLY=($(compgen -W "stdout file: exec: http:// https:// elasticsearch:http:// elasticsearch:https:// syslog syslog:udp:// syslog:tcp://" -- "$cur")); compopt -o nospace; return ;;
    -o) COMPREPLY=($(compgen -W "rules= rule= max_line= workers= max_time= max_worker_memory= max_instructions= max_memory= quarantine_after= no_prefilter= no_max_signals= output_buffer= outputs= metrics= paths= state= no_state= from_end= from_beginning= exclude= ignore_older= max_open_files= rotate_wait= rescan= poll= stats_interval=" -- "$cur")); compopt -o nospace; return ;;
    --metrics) COMPREPLY=($(compgen -W "127.0.0.1:9464 [::1]:9464 0.0.0.0:9464" -- "$cur")); return ;;
    --record|--rule|--max-line|--workers|--max-time|--max-worker-memory|--max-instructions|--max-memory|--quarantine-after|--output-buffer|--exclude|--ignore-older|--max-open-files|--rotate-wait|--rescan|--poll|--stats-interval) return ;;
  esac
  if [[ $cmd == help ]]; then
    COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    return
  fi
  if [[ $cur == -* && $cmd == explain ]]; then
    COMPREPLY=($(compgen -W "--record --help" -- "$cur"))
    return
  fi
  if [[ $cmd == import ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "--out --force --help" -- "$cur"))
    else
      _filedir '@(toml|yml|yaml)'
    fi
    return
  fi
  if [[ $cmd == export ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "--help" -- "$cur"))
    else
      _filedir lua
    fi
    return
  fi
  if [[ $cur == -* ]]; then
    local opts="--config -o --output --output-buffer --metrics --rules --rule --max-line --workers --max-time --max-worker-memory --max-instructions --max-memory --quarantine-after --no-prefilter --no-max-signals --geoip-asn --geoip-city --max-state --help"
    [[ $cmd == run ]] && opts+=" --state --no-state --from-end --from-beginning --exclude --ignore-older --max-open-files --rotate-wait --rescan --poll --stats-interval"
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return
  fi
  _filedir
}
complete -F _trailhound trailhound
