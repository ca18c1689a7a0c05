"""Free-mail domains: an address there says nothing of the company its
owner works for, so ``[assignment] company_owner`` never matches on them.
The list ships (the common providers, worldwide and in the markets leadtap
is used in); ``[assignment] free_mail`` adds to it."""

from __future__ import annotations

FREE_MAIL = frozenset("""
gmail.com googlemail.com outlook.com hotmail.com live.com msn.com yahoo.com ymail.com rocketmail.com aol.com aim.com
icloud.com me.com mac.com proton.me protonmail.com pm.me zoho.com mail.com gmx.com gmx.net gmx.de gmx.at gmx.ch
web.de t-online.de freenet.de arcor.de posteo.de mailbox.org orange.fr wanadoo.fr free.fr laposte.net sfr.fr neuf.fr
bbox.fr libero.it virgilio.it alice.it tiscali.it hotmail.it yahoo.it yahoo.fr yahoo.de yahoo.es yahoo.co.uk
hotmail.co.uk hotmail.fr hotmail.de hotmail.es outlook.de outlook.fr outlook.es live.co.uk live.fr live.de
btinternet.com sky.com virginmedia.com talktalk.net comcast.net verizon.net att.net sbcglobal.net cox.net
charter.net earthlink.net juno.com mail.ru list.ru bk.ru inbox.ru yandex.ru yandex.com rambler.ru ukr.net
seznam.cz centrum.cz wp.pl onet.pl interia.pl o2.pl op.pl inbox.lt one.lt takas.lt inbox.lv one.lv mail.ee
hey.com fastmail.com fastmail.fm tutanota.com tuta.io qq.com 163.com 126.com sina.com naver.com hanmail.net
daum.net rediffmail.com terra.com.br bol.com.br uol.com.br telenet.be skynet.be ziggo.nl kpnmail.nl planet.nl
home.nl bluewin.ch
""".split())


def company_domain(contact: str | None, extra: frozenset[str] = frozenset()) -> str | None:
    """The domain of ``contact``'s address when it names a company; None for free mail."""
    domain = domain_of(contact)
    return None if domain is None or domain in FREE_MAIL or domain in extra else domain


def domain_of(contact: str | None) -> str | None:
    if not contact or "@" not in contact:
        return None
    return contact.rsplit("@", 1)[1].strip().lower()[:255] or None
