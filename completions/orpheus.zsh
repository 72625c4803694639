#compdef orpheus

_orpheus_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _ORPHEUS_COMPLETE=complete_zsh orpheus)
}

compdef _orpheus_completion orpheus
