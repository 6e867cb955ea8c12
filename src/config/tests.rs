use super::*;

const ISSUE_EXAMPLE: &str = r#"
[defaults]
profile = "prod"
region  = "eu-west-1"

[hosts.db-bastion]
target = "tag:Role=bastion"

[forwards.pg]
via    = "db-bastion"
listen = "127.0.0.1:5432"
to     = "prod-db.cluster-abc.eu-west-1.rds.amazonaws.com:5432"
sessions = 2
"#;

fn parse(text: &str) -> Result<Config> {
    Config::parse(Path::new("/home/u/.config/rssm/config.toml"), text)
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_issue_example_reads_as_written() {
    let c = parse(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.defaults.profile.as_deref(), Some("prod"));
    assert_eq!(c.defaults.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.host("db-bastion").unwrap().target, "tag:Role=bastion");
    let pg = &c.forwards["pg"];
    assert_eq!(pg.via, "db-bastion");
    assert_eq!(pg.sessions, 2);
    assert_eq!(pg.spec.bind_addr().to_string(), "127.0.0.1:5432");
    assert_eq!(
        pg.spec.remote().to_string(),
        "prod-db.cluster-abc.eu-west-1.rds.amazonaws.com:5432"
    );
}

#[test]
fn ports_may_be_numbers_and_a_bare_to_port_is_the_target_itself() {
    let c = parse(
        "[forwards.rdp]\nvia = \"i-0123456789abcdef0\"\nlisten = 13389\nto = 3389\n\
         [forwards.v6]\nvia = \"web-1\"\nlisten = \"[::1]:0\"\nto = \"[fd00::5]:80\"\n",
    )
    .unwrap();
    let rdp = &c.forwards["rdp"];
    assert_eq!(rdp.spec.bind_addr().to_string(), "127.0.0.1:13389");
    assert_eq!(rdp.spec.remote().to_string(), "localhost:3389");
    assert_eq!(
        rdp.spec.document(),
        crate::commands::forward::spec::DOCUMENT
    );
    assert_eq!(rdp.sessions, 1);
    let v6 = &c.forwards["v6"];
    assert_eq!(v6.spec.bind_addr().to_string(), "[::1]:0");
    assert_eq!(v6.spec.remote().to_string(), "[fd00::5]:80");
}

#[test]
fn unknown_keys_name_the_file_line_and_table() {
    let e = error("[forwards.pg]\nvia = \"web-1\"\nlisten = 5432\nto = 5432\nlsiten = 1\n");
    assert!(
        e.starts_with("/home/u/.config/rssm/config.toml:5: forwards.pg: unknown field `lsiten`"),
        "{e}"
    );
    let e = error("[defaults]\nprofile = \"a\"\nregoin = \"eu-west-1\"\n");
    assert!(
        e.starts_with("/home/u/.config/rssm/config.toml:3: defaults:"),
        "{e}"
    );
    assert!(e.contains("regoin"), "{e}");
    let e = error("[hostz.a]\ntarget = \"web-1\"\n");
    assert!(e.contains(":1:") && e.contains("hostz"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn bad_values_name_the_file_line_and_key() {
    let cases = [
        ("[defaults]\nregion = \"Ireland\"\n", ":2: defaults.region:"),
        ("[defaults]\nprofile = \"\"\n", ":2: defaults.profile:"),
        ("[defaults]\nproxy = \"socks5://p:1\"\n", ":2: defaults.proxy:"),
        ("[hosts.a]\ntarget = \"tag:Role\"\n", ":2: hosts.a.target:"),
        (
            "[forwards.pg]\nvia = \"web-1\"\nlisten = 70000\nto = 5432\n",
            ":3: forwards.pg.listen:",
        ),
        (
            "[forwards.pg]\nvia = \"web-1\"\nlisten = 5432\nto = \"db:0\"\n",
            ":4: forwards.pg.to:",
        ),
        (
            "[forwards.pg]\nvia = \"web-1\"\nlisten = 5432\nto = \"db\"\n",
            ":4: forwards.pg.to:",
        ),
        (
            "[forwards.pg]\nvia = \"web-1\"\nlisten = 5432\nto = 1\nsessions = 17\n",
            ":5: forwards.pg.sessions: 17 is not 1-16",
        ),
        (
            "[forwards.a]\nvia = \"w\"\nlisten = 80\nto = 80\n[forwards.b]\nvia = \"w\"\nlisten = \"127.0.0.1:80\"\nto = 81\n",
            ":7: forwards.b.listen: 127.0.0.1:80 is also forwards.a.listen",
        ),
        ("[forwards.pg]\nvia = \"web-1\"\nlisten = 5432\n", "forwards.pg: missing field `to`"),
        ("[defaults]\nregion = 5\n", ":2: defaults:"),
        ("not toml at all [\n", "config.toml:1:"),
    ];
    for (text, wanted) in cases {
        let e = error(text);
        assert!(e.contains(wanted), "{text:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

#[test]
fn names_are_words_and_never_instance_ids() {
    let e = error("[hosts.i-0123456789abcdef0]\ntarget = \"web-1\"\n");
    assert!(
        e.contains("hosts.i-0123456789abcdef0: an instance id"),
        "{e}"
    );
    let e = error("[hosts.\"a b\"]\ntarget = \"web-1\"\n");
    assert!(e.contains("letters, digits"), "{e}");
}

#[test]
fn a_named_file_must_exist_and_the_default_one_may_not() {
    let missing = Path::new("/nonexistent/rssm-test/config.toml");
    let e = Config::load(Some(missing)).unwrap_err().to_string();
    assert!(
        e.starts_with("cannot read the config file /nonexistent/"),
        "{e}"
    );
    assert_eq!(path(Some(missing)).unwrap(), missing);
}

#[test]
fn unknown_forward_names_list_the_known_ones() {
    let c = parse(ISSUE_EXAMPLE).unwrap();
    let e = forward(&c, "pgg").unwrap_err().to_string();
    assert!(e.contains("there are: pg"), "{e}");
    assert!(require_forwards(&c).is_ok());
    assert!(require_forwards(&parse("").unwrap()).is_err());
}
