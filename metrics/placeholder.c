int mk__metrics_placeholder(void); int mk__metrics_placeholder(void) { return 0; }
