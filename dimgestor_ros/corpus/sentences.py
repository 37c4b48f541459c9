"""Sentences for the synthetic corpus, written for this project (no third-party text, so no licence questions).

Every fourth sentence per language is held out: held-out clips use only these, spoken by held-out speakers, so a
held-out evaluation measures generalisation to both unseen voices/styles and unseen text.
"""

from __future__ import annotations

SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The robot waves hello when you walk in.",
        "Let me show you how the arm moves.",
        "First we lift the box, then we put it down.",
        "That was a really good question.",
        "On the left you can see the charging station.",
        "I think we should try again tomorrow.",
        "Three small steps are better than one big jump.",
        "Please look over there, near the window.",
        "We measured every joint before the test.",
        "It is not that hard, believe me.",
        "The lab is open from nine until five.",
        "Could you hand me the red cable?",
        "This part is heavy, so be careful.",
        "Our team built the first version in a week.",
        "Listen closely, this is the important bit.",
        "Now turn around and face the camera.",
    ),
    "cmn": (
        "欢迎来到我们的机器人实验室。",
        "我来给你演示一下手臂怎么动。",
        "先把箱子抬起来，再轻轻放下。",
        "这个问题问得非常好。",
        "左边是充电的地方。",
        "我觉得我们明天可以再试一次。",
        "三个小步比一个大跳更稳。",
        "请看那边，靠近窗户的位置。",
        "测试之前我们检查了每个关节。",
        "其实一点也不难，相信我。",
        "实验室早上九点开门。",
        "你能把那根红色的线递给我吗？",
        "这个零件很重，小心一点。",
        "我们一周就做出了第一个版本。",
        "注意听，这一部分最重要。",
        "现在转过身来，看着摄像头。",
    ),
}


def is_held_out(index: int) -> bool:
    """Whether sentence ``index`` of a language belongs to the held-out text."""
    return index % 4 == 3
