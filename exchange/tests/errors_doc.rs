#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `docs/errors.md`'s tables of error codes are generated from the code's enums
//! (`exchange::error::markdown_table`). This fails when the file is stale; run with
//! `UPDATE_GENERATED=1` to write the fresh tables in place (the prose around them stays).

use std::path::Path;

use exchange::error::{Origin, markdown_table};

const END: &str = "<!-- end generated -->";

fn marker(origin: Origin) -> String {
    format!("<!-- generated: {origin:?} -->")
}

/// `doc` with the block after each origin's marker replaced by that origin's table.
fn regenerate(doc: &str) -> String {
    let mut out = doc.to_owned();
    for origin in Origin::ALL {
        let start = marker(origin);
        let at = out
            .find(&start)
            .unwrap_or_else(|| panic!("docs/errors.md lacks the marker {start}"));
        let body_start = at + start.len();
        let body_end = body_start
            + out[body_start..]
                .find(END)
                .unwrap_or_else(|| panic!("{start} has no {END}"));
        out.replace_range(
            body_start..body_end,
            &format!("\n{}", markdown_table(origin)),
        );
    }
    out
}

#[test]
fn the_error_tables_are_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md");
    let doc = std::fs::read_to_string(&path).expect("docs/errors.md");
    let fresh = regenerate(&doc);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &fresh).expect("write docs/errors.md");
        return;
    }
    assert!(
        doc == fresh,
        "docs/errors.md is stale: run `UPDATE_GENERATED=1 cargo test -p exchange --test errors_doc`"
    );
}

#[test]
fn every_code_has_a_row() {
    let doc = regenerate(
        "<!-- generated: Client -->\n<!-- end generated -->\n<!-- generated: ClientProxy -->\n<!-- end generated -->\n<!-- generated: ServerProxy -->\n<!-- end generated -->\n",
    );
    for c in exchange::ClientCode::ALL {
        assert!(doc.contains(&format!("| `Client.{}` |", c.as_str())));
    }
    for c in exchange::ClientProxyCode::ALL {
        assert!(doc.contains(&format!("| `Server.ClientProxy.{}` |", c.as_str())));
    }
    for c in exchange::ServerProxyCode::ALL {
        assert!(doc.contains(&format!("| `Server.ServerProxy.{}` |", c.as_str())));
    }
}
