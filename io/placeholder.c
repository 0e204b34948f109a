int mk__io_placeholder(void); int mk__io_placeholder(void) { return 0; }
