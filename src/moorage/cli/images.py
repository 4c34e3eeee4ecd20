"""Image commands: images, image inspect/ls/prune/history, tag, rmi, import, save, load."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from moorage.cli.connect import client
from moorage.cli.output import human_age, human_size, print_rows
from moorage.errors import InvalidArgument


def _client(ctx: click.Context) -> Any:
    return client(ctx.obj.get("host") if ctx.obj else None)


def _split(tag: str) -> tuple[str, str]:
    """``repo:tag`` as docker's table shows it; ``<none>`` for the untagged."""
    if not tag:
        return "<none>", "<none>"
    name, sep, rest = tag.rpartition(":")
    if sep and "/" not in rest:
        return name, rest
    return tag, "<none>"


def _image_rows(images: list[dict[str, Any]], digests: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for image in images:
        for tag in image["RepoTags"] or [""]:
            repo, tag_name = _split(tag)
            digest = next(
                (d.split("@", 1)[1] for d in image["RepoDigests"] if d.startswith(repo + "@")),
                "<none>",
            )
            rows.append(
                {
                    "ID": image["Id"].removeprefix("sha256:")[:12],
                    "Repository": repo,
                    "Tag": tag_name,
                    "Digest": digest,
                    "CreatedSince": human_age(image["Created"]),
                    "CreatedAt": image["Created"],
                    "Size": human_size(image["Size"]),
                }
            )
    return rows


@click.command("images")
@click.option("-a", "--all", "all_images", is_flag=True, help="show intermediate images too")
@click.option("-q", "--quiet", is_flag=True, help="only image ids")
@click.option("--digests", is_flag=True, help="show digests")
@click.option("--no-trunc", is_flag=True, help="full image ids")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="key=value (dangling, reference, label)"
)
@click.option("--format", "fmt", default=None, help="table, json or a Go-like template")
@click.argument("reference", required=False)
@click.pass_context
def images_cmd(
    ctx: click.Context,
    all_images: bool,
    quiet: bool,
    digests: bool,
    no_trunc: bool,
    filters: tuple[str, ...],
    fmt: str | None,
    reference: str | None,
) -> None:
    """List images."""
    wanted: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid filter: {f} (want key=value)")
        wanted.setdefault(key, []).append(value)
    if reference:
        wanted.setdefault("reference", []).append(reference)
    data = _client(ctx).get_json("/images/json", all=all_images, filters=wanted or None)
    if quiet:
        seen: list[str] = []
        for image in data:
            image_id = image["Id"] if no_trunc else image["Id"].removeprefix("sha256:")[:12]
            if image_id not in seen:
                seen.append(image_id)
        for image_id in seen:
            click.echo(image_id)
        return
    if fmt == "json":
        for image in data:
            click.echo(json.dumps(image))
        return
    rows = _image_rows(data, digests)
    if no_trunc:
        for row, image in zip(rows, data, strict=False):
            row["ID"] = image["Id"]
    columns = [("REPOSITORY", "Repository"), ("TAG", "Tag")]
    if digests:
        columns.append(("DIGEST", "Digest"))
    columns += [("IMAGE ID", "ID"), ("CREATED", "CreatedSince"), ("SIZE", "Size")]
    print_rows(rows, columns, fmt)


@click.command("inspect")
@click.option("--format", "fmt", default=None, help="a Go-like template")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(ctx: click.Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Show low-level information about images, as JSON."""
    from moorage.cli.output import render_template

    c = _client(ctx)
    results = [c.get_json(f"/images/{name}/json") for name in names]
    if fmt:
        for result in results:
            click.echo(render_template(fmt, result))
    else:
        click.echo(json.dumps(results, indent=4))


@click.command("history")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--no-trunc", is_flag=True)
@click.option("--format", "fmt", default=None)
@click.argument("name")
@click.pass_context
def history_cmd(
    ctx: click.Context, quiet: bool, no_trunc: bool, fmt: str | None, name: str
) -> None:
    """Show the history of an image."""
    rows = []
    for entry in _client(ctx).get_json(f"/images/{name}/history"):
        image_id = entry["Id"]
        if image_id.startswith("sha256:") and not no_trunc:
            image_id = image_id.removeprefix("sha256:")[:12]
        created_by = entry["CreatedBy"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(
            {
                "ID": image_id,
                "CreatedSince": human_age(entry["Created"]),
                "CreatedBy": created_by,
                "Size": human_size(entry["Size"]),
                "Comment": entry["Comment"],
            }
        )
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    print_rows(
        rows,
        [
            ("IMAGE", "ID"),
            ("CREATED", "CreatedSince"),
            ("CREATED BY", "CreatedBy"),
            ("SIZE", "Size"),
            ("COMMENT", "Comment"),
        ],
        fmt,
    )


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag_cmd(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    repo, sep, tag = target.rpartition(":")
    if not sep or "/" in tag:
        repo, tag = target, ""
    _client(ctx).request(
        "POST", f"/images/{source}/tag", params={"repo": repo, "tag": tag or None}
    ).read()


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="remove an image referenced by several tags")
@click.option("--no-prune", is_flag=True, help="keep untagged parents")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rmi_cmd(ctx: click.Context, force: bool, no_prune: bool, names: tuple[str, ...]) -> None:
    """Remove images."""
    c = _client(ctx)
    failed = False
    for name in names:
        try:
            result = c.request(
                "DELETE", f"/images/{name}", params={"force": force, "noprune": no_prune}
            ).json()
        except InvalidArgument as exc:
            click.echo(f"Error response from daemon: {exc}", err=True)
            failed = True
            continue
        except Exception as exc:  # noqa: BLE001 - each name is reported, then the next
            click.echo(f"Error response from daemon: {exc}", err=True)
            failed = True
            continue
        for item in result:
            for key, value in item.items():
                click.echo(f"{key}: {value}")
    if failed:
        sys.exit(1)


@click.command("prune")
@click.option(
    "-a", "--all", "all_images", is_flag=True, help="all unused images, not just dangling"
)
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def prune_cmd(ctx: click.Context, all_images: bool, force: bool) -> None:
    """Remove unused images."""
    if not force:
        what = "all images without at least one container" if all_images else "dangling images"
        click.confirm(
            f"WARNING! This will remove {what}.\nAre you sure you want to continue?", abort=True
        )
    filters = {"dangling": ["false"]} if all_images else None
    result = _client(ctx).request("POST", "/images/prune", params={"filters": filters}).json()
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        click.echo("Deleted Images:")
        for item in deleted:
            for key, value in item.items():
                click.echo(f"{key.lower()}: {value}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")


def post_import(
    c: Any, stream: IO[bytes], repo: str | None, tag: str | None, changes: list[str], message: str
) -> Iterator[str]:
    """POST a root filesystem tar to /images/create; yield the daemon's status lines."""
    response = c.request(
        "POST",
        "/images/create",
        params={
            "fromSrc": "-",
            "repo": repo,
            "tag": tag,
            "message": message,
            "changes": changes or None,
        },
        body=stream,
    )
    for event in response.iter_json_lines():
        if "error" in event:
            raise InvalidArgument(event["error"])
        yield event.get("status", "")


@click.command("import")
@click.option("-c", "--change", "changes", multiple=True, help="Dockerfile instruction to apply")
@click.option("-m", "--message", default="", help="commit message")
@click.argument("source")
@click.argument("reference", required=False)
@click.pass_context
def import_cmd(
    ctx: click.Context, source: str, reference: str | None, changes: tuple[str, ...], message: str
) -> None:
    """Import a root filesystem tarball (a file, or - for stdin) as an image."""
    repo, tag = (None, None)
    if reference:
        repo, sep, tag_part = reference.rpartition(":")
        if not sep or "/" in tag_part:
            repo, tag_part = reference, ""
        tag = tag_part or None
    stream: IO[bytes]
    if source == "-":
        stream = sys.stdin.buffer
    else:
        if not os.path.isfile(source):
            raise InvalidArgument(f"import: no such file: {source}")
        stream = open(source, "rb")  # noqa: SIM115 - closed below
    try:
        for status in post_import(_client(ctx), stream, repo, tag, list(changes), message):
            click.echo(status)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


@click.command("save")
@click.option("-o", "--output", help="write to a file instead of stdout")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    show_default=True,
    help="docker-archive or OCI image layout",
)
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def save_cmd(ctx: click.Context, output: str | None, fmt: str, names: tuple[str, ...]) -> None:
    """Save images to a tar archive."""
    if output is None and sys.stdout.isatty():
        raise InvalidArgument("save: refusing to write an archive to a terminal (use -o)")
    response = _client(ctx).request(
        "GET", "/images/get", params={"names": list(names), "format": fmt}
    )
    if output is None:
        for chunk in response.iter_chunks():
            sys.stdout.buffer.write(chunk)
        return
    tmp = f"{output}.moor-{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            for chunk in response.iter_chunks():
                f.write(chunk)
        os.rename(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@click.command("load")
@click.option("-i", "--input", "source", help="read from a file instead of stdin")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def load_cmd(ctx: click.Context, source: str | None, quiet: bool) -> None:
    """Load images from a tar archive (docker save or OCI layout)."""
    stream: IO[bytes] = sys.stdin.buffer if source is None else open(source, "rb")  # noqa: SIM115
    try:
        response = _client(ctx).request(
            "POST", "/images/load", params={"quiet": quiet}, body=stream
        )
        for event in response.iter_json_lines():
            if "error" in event:
                raise InvalidArgument(event["error"])
            if not quiet:
                click.echo(event.get("stream", "").rstrip("\n"))
    finally:
        if source is not None:
            stream.close()


@click.command("df")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def df_cmd(ctx: click.Context, verbose: bool) -> None:
    """Show disk usage."""
    data = _client(ctx).get_json("/system/df")
    images = data.get("Images") or []
    total = sum(i["Size"] for i in images)
    rows = [
        {
            "Type": "Images",
            "Total": len(images),
            "Active": 0,
            "Size": human_size(total),
            "Reclaimable": f"{human_size(total)} (100%)" if total else "0B",
        },
        {"Type": "Containers", "Total": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"},
        {"Type": "Local Volumes", "Total": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"},
        {"Type": "Build Cache", "Total": 0, "Active": 0, "Size": "0B", "Reclaimable": "0B"},
    ]
    print_rows(
        rows,
        [
            ("TYPE", "Type"),
            ("TOTAL", "Total"),
            ("ACTIVE", "Active"),
            ("SIZE", "Size"),
            ("RECLAIMABLE", "Reclaimable"),
        ],
        None,
    )
    if verbose:
        click.echo()
        print_rows(
            _image_rows(images, False),
            [
                ("REPOSITORY", "Repository"),
                ("TAG", "Tag"),
                ("IMAGE ID", "ID"),
                ("CREATED", "CreatedSince"),
                ("SIZE", "Size"),
            ],
            None,
        )


def register(cli: click.Group) -> None:
    cli.add_command(images_cmd)
    cli.add_command(history_cmd)
    cli.add_command(tag_cmd)
    cli.add_command(rmi_cmd)
    cli.add_command(import_cmd)
    cli.add_command(save_cmd)
    cli.add_command(load_cmd)

    @cli.group("image")
    def image_group() -> None:
        """Manage images."""

    image_group.add_command(images_cmd, "ls")
    image_group.add_command(inspect_cmd)
    image_group.add_command(history_cmd)
    image_group.add_command(prune_cmd)
    image_group.add_command(tag_cmd)
    image_group.add_command(rmi_cmd, "rm")
    image_group.add_command(import_cmd)
    image_group.add_command(save_cmd)
    image_group.add_command(load_cmd)

    @cli.group("system")
    def system_group() -> None:
        """Manage Moorage."""

    system_group.add_command(df_cmd)
