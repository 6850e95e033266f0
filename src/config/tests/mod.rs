//! Unit tests of the configuration module.

mod support;

mod smoke {
    use super::support::*;

    #[test]
    fn defaults_load() {
        let cfg = run(&["--ignore-config-path"], &[]);
        assert_eq!(cfg.server.port, 8080);
    }
}
