"""A loopback replica of Telegram's public channel previews, `https://t.me/s/<channel>`, with
the markup t.me serves (as snscrape's telegram module and the notes in
/work/shared/notes/sources.md section 3 describe it):

    async with serve(TelegramSite()) as site:
        site.post("chan", "text")                  # message 1, 2, ...: its id
        site.post("chan", "dump", files=[("base.csv", "12.0 MB")])
        site.url("/s/chan")                        # the newest `per_page` messages, oldest first
        site.url("/s/chan?before=12")              # the messages older than 12
        site.edit("chan", 1, "new text")           # an edited message (the page says "edited")

- `/s/<channel>` pages: a channel header, the history section, the `a.tme_messages_more
  [data-before]` link to the older page first (when there are older messages) and a `data-after`
  link last on a `?before=` page; each message a `div.tgme_widget_message_wrap` holding
  `div.tgme_widget_message[data-post]` with the author, an optional quoted reply, an optional
  photo, documents (`a.tgme_widget_message_document_wrap`), the text (`<br/>` between lines,
  links as `<a href>`) and the footer (views, `a.tgme_widget_message_date` with
  `time[datetime]`). Message 1 is the "Channel created" service message. ETags on every page.
- `failing_older`: channels whose `?before=` pages answer 502.
- `private`: channels without a public preview; their `/s/` page redirects to `/<channel>`,
  the contact page, as t.me does.
- `/<channel>`: the contact page ("Telegram: Contact @chan").
- `raw`: path -> markup served as is (hostile pages).

Message dates are generated (a fixed start, one minute apart) and ids count from 1.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC

from aiohttp import web

from tests.support.fakesites import FakeSite, conditional

START = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)


@dataclass
class TgMessage:
    """A message of the replica: text lines, documents (title, size), photo, reply, edited."""

    post_id: int
    text: str
    at: datetime
    files: list[tuple[str, str]] = field(default_factory=list)
    photo: bool = False
    reply_to: int | None = None
    edited: bool = False
    service: bool = False


class TelegramSite(FakeSite):
    """t.me's `/s/<channel>` previews of the channels in `channels` (see the module docstring)."""

    per_page = 20

    def __init__(self) -> None:
        self.channels: dict[str, list[TgMessage]] = {}
        self.private: set[str] = set()
        self.failing_older: set[str] = set()
        self.raw: dict[str, str] = {}
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/s/{channel}", self.preview)
        router.add_get("/raw/{name}", self.raw_page)
        router.add_get("/{channel}", self.contact)

    # -- content -----------------------------------------------------------------------------------

    def post(self, channel: str, text: str, *, files: list[tuple[str, str]] | None = None,
             photo: bool = False, reply_to: int | None = None) -> int:
        """A new message in `channel` (created with its service message); its id."""
        messages = self.channels.setdefault(channel, [])
        if not messages:
            messages.append(TgMessage(1, "Channel created", START, service=True))
        post_id = messages[-1].post_id + 1
        messages.append(TgMessage(post_id, text, START + timedelta(minutes=post_id), list(files or []),
                                  photo, reply_to))
        return post_id

    def edit(self, channel: str, post_id: int, text: str) -> None:
        """Edit a message's text."""
        message = next(m for m in self.channels[channel] if m.post_id == post_id)
        message.text, message.edited = text, True

    # -- handlers ----------------------------------------------------------------------------------

    async def preview(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        if channel in self.private or channel not in self.channels:
            raise web.HTTPFound(f"/{channel}")
        messages = self.channels[channel]
        before = request.query.get("before")
        if before is not None and channel in self.failing_older:
            raise web.HTTPBadGateway()
        if before is not None:
            messages = [m for m in messages if m.post_id < int(before)]
        shown = messages[-self.per_page:]
        return conditional(request, self.page(channel, shown, older=len(messages) > len(shown),
                                              newer=before is not None), "text/html")

    async def contact(self, request: web.Request) -> web.Response:
        channel = html.escape(request.match_info["channel"])
        body = (f"<div class='tgme_page'><div class='tgme_page_title'><span dir='auto'>{channel}</span></div>"
                f"<div class='tgme_page_extra'>1 234 subscribers</div>"
                f"<a class='tgme_action_button_new' href='tg://resolve?domain={channel}'>View in Telegram</a></div>")
        return web.Response(text=_document(f"Telegram: Contact @{channel}", body), content_type="text/html")

    async def raw_page(self, request: web.Request) -> web.Response:
        markup = self.raw.get(request.match_info["name"])
        if markup is None:
            raise web.HTTPNotFound()
        return web.Response(text=markup, content_type="text/html")

    # -- markup ------------------------------------------------------------------------------------

    def page(self, channel: str, messages: list[TgMessage], older: bool, newer: bool) -> str:
        """A preview page of `messages`, with the links to the older and newer pages."""
        name = html.escape(channel)
        header = (f"<header class='tgme_header search_collapsed'><div class='tgme_header_info'>"
                  f"<div class='tgme_header_title'><span dir='auto'>{name}</span></div>"
                  f"<div class='tgme_header_counter'>1.2K subscribers</div></div></header>")
        more = ""
        if older and messages:
            first = messages[0].post_id
            more = (f"<div class='tgme_widget_message_centered js-messages_more_wrap'>"
                    f"<a href='/s/{name}?before={first}' class='tme_messages_more js-messages_more' "
                    f"data-before='{first}'></a></div>")
        after = ""
        if newer and messages:
            last = messages[-1].post_id
            after = (f"<div class='tgme_widget_message_centered js-messages_more_wrap'>"
                     f"<a href='/s/{name}?after={last}' class='tme_messages_more js-messages_more' "
                     f"data-after='{last}'></a></div>")
        history = "".join(self.message(channel, m) for m in messages)
        body = (f"{header}<main class='tgme_main' data-url='/s/{name}'><div class='tgme_container'>"
                f"<section class='tgme_channel_history js-message_history'>{more}{history}{after}</section>"
                f"</div></main>")
        return _document(f"{name} – Telegram", body)

    def message(self, channel: str, message: TgMessage) -> str:
        """One message's markup, as t.me writes it."""
        post = f"{html.escape(channel)}/{message.post_id}"
        if message.service:
            return (f"<div class='tgme_widget_message_wrap js-widget_message_wrap'>"
                    f"<div class='tgme_widget_message service_message js-widget_message' data-post='{post}'>"
                    f"<div class='tgme_widget_message_bubble'><div class='tgme_widget_message_text js-message_text' "
                    f"dir='auto'>{html.escape(message.text)}</div></div></div></div>")
        author = (f"<div class='tgme_widget_message_user'><a href='https://t.me/{html.escape(channel)}'>"
                  f"<i class='tgme_widget_message_user_photo bgcolor1' data-content='C'></i></a></div>")
        owner = (f"<div class='tgme_widget_message_author accent_color'><a class='tgme_widget_message_owner_name' "
                 f"href='https://t.me/{html.escape(channel)}'><span dir='auto'>{html.escape(channel)}</span></a></div>")
        reply = ""
        if message.reply_to is not None:
            quoted = next((m for m in self.channels[channel] if m.post_id == message.reply_to), None)
            quoted_text = html.escape(quoted.text.splitlines()[0]) if quoted else "Deleted message"
            reply = (f"<a class='tgme_widget_message_reply' href='https://t.me/{html.escape(channel)}/{message.reply_to}'>"
                     f"<div class='tgme_widget_message_author accent_color'><span class='tgme_widget_message_author_name' "
                     f"dir='auto'>{html.escape(channel)}</span></div><div class='tgme_widget_message_text "
                     f"js-message_reply_text' dir='auto'>{quoted_text}</div></a>")
        photo = (f"<a class='tgme_widget_message_photo_wrap blured' href='https://t.me/{post}' style='width:800px;"
                 f"background-image:url(\"https://cdn4.telesco.pe/file/p{message.post_id}.jpg\")'>"
                 f"<div class='tgme_widget_message_photo' style='padding-top:75%'></div></a>") if message.photo else ""
        documents = "".join(
            f"<div class='tgme_widget_message_document_wrap'><a class='tgme_widget_message_document_wrap' "
            f"href='https://t.me/{post}'><div class='tgme_widget_message_document_icon accent_bg'></div>"
            f"<div class='tgme_widget_message_document'><div class='tgme_widget_message_document_title accent_color' "
            f"dir='auto'>{html.escape(title)}</div><div class='tgme_widget_message_document_extra' dir='auto'>"
            f"{html.escape(size)}</div></div></a></div>" for title, size in message.files)
        text = ""
        if message.text:
            text = (f"<div class='tgme_widget_message_text js-message_text' dir='auto'>"
                    f"{'<br/>'.join(_linkify(line) for line in message.text.splitlines())}</div>")
        stamp = message.at.isoformat()
        edited = "<span class='tgme_widget_message_meta'>edited </span>" if message.edited else ""
        footer = (f"<div class='tgme_widget_message_footer compact js-message_footer'>"
                  f"<div class='tgme_widget_message_info short js-message_info'>"
                  f"<span class='tgme_widget_message_views'>1.2K</span><span class='copyonly'> views</span>{edited}"
                  f"<span class='tgme_widget_message_meta'><a class='tgme_widget_message_date' href='https://t.me/{post}'>"
                  f"<time datetime='{stamp}' class='time'>{message.at:%H:%M}</time></a></span></div></div>")
        return (f"<div class='tgme_widget_message_wrap js-widget_message_wrap'>"
                f"<div class='tgme_widget_message text_not_supported_wrap js-widget_message' data-post='{post}' "
                f"data-view='eyJjIjotMTAwfQ'>{author}<div class='tgme_widget_message_bubble'>"
                f"<i class='tgme_widget_message_bubble_tail'><svg class='bubble_icon' width='9px' height='20px'></svg></i>"
                f"{owner}{reply}{photo}{documents}{text}{footer}</div></div></div>")


def _linkify(line: str) -> str:
    """A text line with its http(s) words as links, the way Telegram writes them."""
    words = []
    for word in line.split(" "):
        if word.startswith(("http://", "https://")):
            words.append(f"<a href='{html.escape(word)}' target='_blank' rel='noopener'>{html.escape(word)}</a>")
        else:
            words.append(html.escape(word))
    return " ".join(words)


def _document(title: str, body: str) -> str:
    """A whole t.me page around `body`."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1.0'>"
            f"<link href='//telegram.org/css/widget-frame.css' rel='stylesheet'>"
            f"<script>var TWidgetAuth = {{}};</script></head>"
            f"<body class='widget_frame_base tgme_webpreview_body emoji_image'>{body}</body></html>")
