/* Placeholder translation unit until the TOML/config sources land (keeps mk_config non-empty). */
typedef int mk__config_placeholder;
