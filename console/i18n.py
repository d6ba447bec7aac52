"""Two languages, zh-CN and en-US: the words of the pages, tier names, and dates.

Each entry is ``key: (en-US, zh-CN)``. A key with no entry shows as itself, so a value the services
add later (a new reason, a new segment) still shows, untranslated.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

LANGUAGES = ("zh-CN", "en-US")

WORDS: dict[str, tuple[str, str]] = {
    # navigation and frame
    "app": ("Care console", "客户关怀控制台"),
    "nav.customers": ("Customers", "客户"),
    "nav.complaints": ("Complaints", "投诉"),
    "nav.queue": ("Work queues", "工作队列"),
    "nav.dashboard": ("Dashboard", "仪表盘"),
    "nav.policy": ("Policy", "分级策略"),
    "signout": ("Sign out", "退出"),
    "language": ("Language", "语言"),
    "scopes": ("Key scopes", "密钥权限"),
    "not_allowed": ("Your key does not allow this.", "您的密钥无权执行此操作。"),
    "service_down": ("The {service} service is not answering ({why}); what it holds is not shown.",
                     "{service}服务无响应（{why}），其数据暂不显示。"),
    "service_error": ("The {service} service answered: {detail}", "{service}服务返回：{detail}"),
    "svc.customer": ("customer", "客户"), "svc.tiering": ("tiering", "分级"),
    "svc.complaints": ("complaints", "投诉"), "svc.notifications": ("notifications", "通知"),
    "why.unreachable": ("unreachable", "无法连接"), "why.timeout": ("timed out", "超时"),
    "none": ("none", "无"), "unknown": ("unknown", "未知"), "yes": ("yes", "是"), "no": ("no", "否"),
    "save": ("Save", "保存"), "cancel": ("Cancel", "取消"), "search": ("Search", "搜索"),
    "filter": ("Filter", "筛选"), "all": ("all", "全部"), "more": ("Older", "更早"), "next": ("Next page", "下一页"),
    "done": ("Done.", "已完成。"),
    "refused": ("Refused: {detail}", "被拒绝：{detail}"),
    # sign-in
    "login.title": ("Sign in", "登录"),
    "login.key": ("API key", "API 密钥"),
    "login.submit": ("Sign in", "登录"),
    "login.hint": ("Sign in with the API key your operator issued.", "请使用运维人员签发的 API 密钥登录。"),
    "login.bad": ("That key is not known to the services.", "服务不认识该密钥。"),
    "login.limited": ("Too many failed sign-ins; try again in {seconds} s.", "登录失败次数过多，请 {seconds} 秒后重试。"),
    "login.down": ("No service answers, so the key cannot be checked; try again shortly.",
                   "所有服务均无响应，无法验证密钥，请稍后再试。"),
    "status.checking": ("Checking the services…", "正在检查服务…"),
    "status.up": ("answering", "正常"), "status.down": ("not answering", "无响应"),
    "login.expired": ("Your session has ended; sign in again.", "会话已结束，请重新登录。"),
    "csrf": ("The form was out of date; try again.", "表单已过期，请重试。"),
    # customers
    "customers.title": ("Customers", "客户"),
    "customers.query": ("Customer id, phone or e-mail", "客户编号、手机号或邮箱"),
    "customers.pii_needed": ("Searching by phone or e-mail needs the pii:read scope.", "按手机号或邮箱搜索需要 pii:read 权限。"),
    "customers.none": ("No customer found.", "未找到客户。"),
    "customers.browse": ("Browse all customers", "浏览全部客户"),
    "customers.bad_query": ("Not a customer id, phone number or e-mail address: {detail}",
                            "不是有效的客户编号、手机号或邮箱：{detail}"),
    "customer.id": ("Customer id", "客户编号"), "customer.name": ("Name", "姓名"),
    "customer.phone": ("Phone", "手机"), "customer.email": ("E-mail", "邮箱"), "customer.address": ("Address", "地址"),
    "customer.locale": ("Locale", "语言区域"), "customer.timezone": ("Time zone", "时区"),
    "customer.country": ("Country", "国家/地区"), "customer.birthday": ("Birthday", "生日"),
    "customer.tags": ("Tags", "标签"), "customer.status": ("Status", "状态"), "customer.needs": ("Needs", "需求"),
    "customer.preferred_channel": ("Preferred channel", "首选渠道"), "customer.referred_by": ("Referred by", "推荐人"),
    "customer.created_at": ("Registered", "注册时间"), "customer.updated_at": ("Updated", "更新时间"),
    "customer.profile": ("Profile", "档案"), "customer.summary": ("Activity", "活动概况"),
    "customer.manager": ("Account manager", "客户经理"),
    "customer.manager_none": ("None", "无"),
    "customer.manager_since": ("since {since}", "自 {since} 起"),
    "customer.industry": ("Industry", "行业"), "customer.region": ("Region", "区域"),
    "customer.relationship_since": ("Customer since", "合作起始"),
    "customer.classification": ("Classification", "分级"),
    "customer.unclassified": ("Not classified yet (no purchase seen).", "尚未分级（尚无购买记录）。"),
    "customer.history": ("Tier history", "等级变更历史"),
    "customer.overrides_audit": ("Override audit", "人工调整记录"),
    "customer.consents": ("Consents", "授权"), "customer.timeline": ("Timeline", "时间线"),
    "customer.messages": ("Messages", "消息"), "customer.complaints": ("Complaints", "投诉"),
    "customer.metrics": ("Metrics", "指标"),
    "summary.orders": ("Orders", "订单数"), "summary.refunds": ("Refunds", "退款数"),
    "summary.net_spend": ("Net spend", "净消费"), "summary.last_purchase_at": ("Last purchase", "最近购买"),
    "summary.interactions": ("Interactions", "互动次数"), "summary.complaints": ("Complaints", "投诉数"),
    "summary.open_complaints": ("Open complaints", "未结投诉"), "summary.messages": ("Messages", "消息数"),
    "col.dimension": ("Dimension", "维度"), "col.value": ("Value", "取值"), "col.reason": ("Reason", "原因"),
    "col.override": ("Override", "人工调整"), "col.pending": ("Pending downgrade", "待降级"),
    "col.when": ("When", "时间"), "col.what": ("What", "内容"), "col.from": ("From", "原值"), "col.to": ("To", "新值"),
    "col.direction": ("Direction", "方向"), "col.actor": ("By", "操作人"), "col.source": ("Source", "来源"),
    "col.channel": ("Channel", "渠道"), "col.outcome": ("Outcome", "结果"), "col.trigger": ("Trigger", "触发"),
    "col.template": ("Template", "模板"), "col.status": ("Status", "状态"), "col.priority": ("Priority", "优先级"),
    "col.tier": ("Tier", "等级"), "col.assignee": ("Assignee", "处理人"), "col.due": ("Next target", "下一时限"),
    "col.subject": ("Subject", "主题"), "col.customer": ("Customer", "客户"), "col.team": ("Team", "团队"), "col.level": ("Held by", "当前层级"),
    "col.opened": ("Opened", "创建时间"), "col.count": ("Customers", "客户数"),
    "action.interaction": ("Record an interaction", "记录互动"),
    "action.kind": ("Kind", "类型"), "action.direction": ("Direction", "方向"), "action.summary": ("Summary", "摘要"),
    "action.satisfaction": ("Satisfaction (1-5)", "满意度（1-5）"),
    "action.record": ("Record", "记录"),
    "action.recorded": ("Interaction recorded; it joins the timeline in a moment.", "互动已记录，稍后将出现在时间线中。"),
    "action.override": ("Set a tier override", "设置人工等级"),
    "action.mode": ("Mode", "方式"), "mode.floor": ("floor (at least)", "下限（至少）"), "mode.lock": ("lock (exactly)", "锁定（固定）"),
    "action.expires": ("Expires (optional)", "到期时间（可选）"),
    "action.set": ("Set override", "设置"), "action.lift": ("Lift", "取消"),
    "action.override_set": ("Override set.", "人工等级已设置。"), "action.override_lifted": ("Override lifted.", "人工等级已取消。"),
    "direction.inbound": ("inbound", "呼入"), "direction.outbound": ("outbound", "呼出"),
    # complaints
    "complaints.title": ("Complaint queue", "投诉工作队列"),
    "complaints.open": ("open", "未结"),
    "complaints.refresh": ("Refreshes every {seconds} s.", "每 {seconds} 秒自动刷新。"),
    "complaints.none": ("No complaint matches.", "没有匹配的投诉。"),
    "complaints.capped": ("Showing the {count} nearest of the complaints read.", "显示已读取投诉中最近到期的 {count} 条。"),
    "complaint.title": ("Complaint", "投诉"), "complaint.description": ("Description", "描述"),
    "complaint.timers": ("SLA timers", "SLA 计时"), "complaint.timer_log": ("Timer log", "计时记录"),
    "complaint.comments": ("Comments", "备注"), "complaint.feedback": ("Feedback", "反馈"),
    "complaint.transition": ("Move to", "转为"), "complaint.resolution_summary": ("Resolution summary", "处理结果"),
    "complaint.root_cause": ("Root cause", "根本原因"),
    "complaint.assign": ("Assign", "分配"), "complaint.comment": ("Add comment", "添加备注"),
    "complaint.verify": ("Verify resolution", "核实处理结果"), "complaint.reopen": ("Reopen", "重新打开"),
    "complaint.reopen_reason": ("Reason", "原因"),
    "complaint.refused": ("Refused: {detail}", "被拒绝：{detail}"),
    "complaint.escalated_to": ("Escalated to", "升级至"), "complaint.breached": ("breached", "已超时"),
    "complaint.warned": ("warned", "预警"), "complaint.met": ("met", "达成"), "complaint.missed": ("missed", "未达成"),
    "complaint.used": ("used", "已用"), "complaint.sla_policy": ("SLA policy", "SLA 策略"),
    "complaint.allowed": ("Allowed next", "允许的下一步"),
    "complaint.linked": ("Linked complaint", "关联投诉"),
    "complaint.history": ("History", "处理历史"),
    "complaint.alerts": ("Escalations and staff alerts", "升级与员工提醒"),
    "complaint.alert_at": ("When", "时间"), "complaint.alert_event": ("What", "事件"), "complaint.alert_who": ("Who", "人员"),
    "complaint.alert_why": ("Why", "原因"), "complaint.off_duty": ("nobody on duty", "无人值班"),
    "event.staff_alert": ("staff alerted", "已提醒员工"), "event.escalated": ("escalated", "已升级"),
    "event.sla_warning": ("SLA warning", "SLA 预警"), "event.sla_breached": ("SLA breached", "SLA 超时"),
    "alert.escalated": ("escalated to them", "升级给其处理"), "alert.sla_warning": ("due soon", "即将到期"),
    "alert.sla_breached": ("overdue", "已超时"),
    "alert_reason.first_response_warning": ("first response due soon", "首次响应即将到期"),
    "alert_reason.update_warning": ("update due soon", "进展更新即将到期"),
    "alert_reason.resolution_warning": ("resolution due soon", "解决即将到期"),
    "alert_reason.first_response_breached": ("first response overdue", "首次响应已超时"),
    "alert_reason.update_breached": ("update overdue", "进展更新已超时"),
    "alert_reason.resolution_breached": ("resolution overdue", "解决已超时"),
    "alert_reason.low_satisfaction": ("low satisfaction score", "满意度评分低"),
    "target.first_response": ("first response", "首次响应"), "target.update": ("update", "进展更新"),
    "target.resolution": ("resolution", "解决"),
    "state.running": ("running", "计时中"), "state.paused": ("paused", "暂停"), "state.fulfilled": ("fulfilled", "已完成"),
    "status.received": ("received", "已接收"), "status.acknowledged": ("acknowledged", "已确认"),
    "status.investigating": ("investigating", "调查中"), "status.waiting_on_customer": ("waiting on customer", "等待客户"),
    "status.waiting_on_third_party": ("waiting on third party", "等待第三方"), "status.resolved": ("resolved", "已解决"),
    "status.closed": ("closed", "已关闭"),
    "team.handler": ("handler", "处理人员"), "team.supervisor": ("supervisor", "主管"), "team.manager": ("manager", "经理"),
    # a person's or a team's work queue
    "queue.title": ("Work queue", "工作队列"),
    "queue.person": ("Person", "人员"), "queue.choose": ("— choose —", "— 请选择 —"),
    "queue.account_manager": ("account manager", "客户经理"), "queue.show": ("Show", "查看"),
    "queue.hint": ("Choose a person or a team to see their queue.", "请选择人员或团队以查看其工作队列。"),
    "queue.counts": ("Open complaints: {complaints}; return visits: {tasks}.", "未结投诉：{complaints} 件；回访任务：{tasks} 项。"),
    "queue.team_counts": ("Open complaints: {complaints}.", "未结投诉：{complaints} 件。"),
    "queue.kind": ("Kind", "类型"),
    "queue.kind.complaint": ("complaint", "投诉"), "queue.kind.return_visit": ("return visit", "回访"),
    "queue.due": ("Due", "到期时间"), "queue.overdue": ("overdue", "已逾期"),
    "queue.visit_on": ("follow-up of {day}", "{day} 的回访"),
    "queue.empty": ("Nothing open in this queue.", "该队列中没有未完成的事项。"),
    "queue.record": ("Record the outcome", "记录回访结果"), "queue.outcome": ("Outcome", "结果"),
    "queue.save_outcome": ("Save outcome", "保存结果"),
    "queue.recorded": ("Outcome recorded; the visit leaves the queue.", "回访结果已记录，该任务已移出队列。"),
    "visit.completed": ("completed", "已完成"), "visit.unreachable": ("unreachable", "未能联系"),
    "visit.declined": ("declined by the customer", "客户拒绝"),
    "visit_channel.visit": ("visit", "上门拜访"), "visit_channel.call": ("call", "电话"),
    "visit_channel.video": ("video call", "视频通话"), "visit_channel.email": ("e-mail", "邮件"),
    # account manager on the 360-degree view
    "manager.change": ("Change the account manager", "更换客户经理"),
    "manager.none": ("No account manager", "不设客户经理"),
    "manager.save": ("Change", "更换"),
    "manager.changed": ("Account manager changed; the profile shows it in a moment.", "客户经理已更换，档案稍后更新。"),
    "manager.audit": ("Account manager changes", "客户经理变更记录"),
    "manager.rule": ("assignment rule", "分配规则"),
    # dashboard
    "dashboard.title": ("Dashboard", "仪表盘"),
    "dashboard.distribution": ("Customers per class", "各维度客户分布"),
    "dashboard.pareto": ("Pareto: share of customers and of revenue per ABC class", "帕累托：各 ABC 类客户占比与收入占比"),
    "dashboard.customer_share": ("share of customers", "客户占比"), "dashboard.revenue_share": ("share of revenue", "收入占比"),
    "dashboard.sla": ("SLA attainment, last 90 days", "SLA 达成率（近 90 天）"),
    "dashboard.escalations": ("Escalations of breached complaints", "超时投诉的升级"),
    "dashboard.csat": ("CSAT per month", "每月满意度"),
    "dashboard.csat_avg": ("average score (1-5)", "平均分（1-5）"), "dashboard.csat_rate": ("satisfied share (%)", "满意占比（%）"),
    "dashboard.messages": ("Messages sent and suppressed", "已发送与被抑制的消息"),
    "dashboard.churn": ("Customers at risk of churn, by reason", "流失风险客户（按原因）"),
    "dashboard.churn_total": ("{total} customers at risk of churn, each under the first reason found.",
                              "流失风险客户共 {total} 位，每位按首个原因计。"),
    "dashboard.unavailable": ("Not available: {why}", "暂无数据：{why}"),
    "dashboard.no_data": ("no figures yet", "尚无数据"),
    "dashboard.no_scope": ("the key lacks {scope}", "密钥缺少 {scope} 权限"),
    "dashboard.customers": ("{count} customers classified", "已分级客户 {count} 位"),
    "dashboard.holders": ("Complaints per team and per person, last 90 days", "各团队与个人的投诉情况（近 90 天）"),
    "dashboard.by_team": ("By team", "按团队"), "dashboard.by_assignee": ("By person holding them", "按当前处理人"),
    "dashboard.unassigned": ("unassigned", "未分配"), "dashboard.col_complaints": ("complaints", "投诉数"),
    "dashboard.col_escalated": ("escalated", "已升级"), "dashboard.col_responses": ("answers", "答卷数"),
    "dashboard.col_resolution_hours": ("median hours to resolve", "解决时长中位数（小时）"),
    "dashboard.general": ("General satisfaction by tier (survey answers about no complaint), last 90 days",
                          "各等级总体满意度（与投诉无关的调查答卷，近 90 天）"),
    "dashboard.complaints_total": ("{total} complaints opened, {breached} breached", "新开投诉 {total} 件，超时 {breached} 件"),
    "churn.recency": ("long since the last purchase", "距上次购买过久"),
    "churn.frequency_drop": ("orders fell", "订单减少"),
    "churn.open_complaints": ("open complaints", "未结投诉"), "churn.low_satisfaction": ("low satisfaction", "满意度低"),
    "churn.override": ("set by hand", "人工设定"), "churn.no_tier": ("no tier yet", "尚无等级"),
    "outcome.sent": ("sent", "已发送"), "outcome.suppressed": ("suppressed", "被抑制"), "outcome.failed": ("failed", "失败"),
    "outcome.deferred": ("deferred", "延后"), "outcome.pending": ("pending", "待发送"),
    "reason.no_consent": ("no consent", "未授权"), "reason.frequency_cap": ("frequency cap", "频率上限"),
    "reason.quiet_hours_deferred": ("quiet hours", "免打扰时段"), "reason.duplicate": ("duplicate", "重复"),
    "reason.no_contact": ("no contact", "无联系方式"), "reason.order_refunded": ("order refunded", "订单已退款"),
    # policy
    "policy.title": ("Tiering policy", "分级策略"),
    "policy.current": ("Active version {version}", "当前版本 {version}"),
    "policy.edit": ("Edit (JSON). Give the new policy a new version: versions are immutable.",
                    "编辑（JSON）。新策略须使用新的版本号：已有版本不可修改。"),
    "policy.dry_run": ("Dry run", "试运行"),
    "policy.apply": ("Apply this policy", "应用此策略"), "policy.walk_away": ("Walk away", "放弃"),
    "policy.result": ("Dry run of version {version}: {changed} of {customers} customers would move.",
                      "版本 {version} 试运行：{customers} 位客户中有 {changed} 位将变动。"),
    "policy.no_moves": ("Nobody moves.", "无客户变动。"),
    "policy.who": ("who, for example", "例如"),
    "policy.applied": ("Policy {version} is active; {events} changes published.", "策略 {version} 已生效，发布了 {events} 条变更。"),
    "policy.bad_json": ("Not valid JSON: {detail}", "不是有效的 JSON：{detail}"),
    "policy.view_only": ("Your key may read the policy but not change it (policy:write).",
                         "您的密钥只能查看策略，不能修改（需要 policy:write）。"),
    # dimensions
    "dim.value_tier": ("Value tier", "价值等级"), "dim.abc_class": ("ABC class", "ABC 分类"), "dim.vip": ("VIP", "VIP"),
    "dim.loyalty": ("Loyalty", "忠诚度"), "dim.lifecycle": ("Lifecycle", "生命周期"),
    "dim.rfm_segment": ("RFM segment", "RFM 分群"), "dim.potential": ("Potential", "潜力"),
    "kind.purchase": ("purchase", "购买"), "kind.refund": ("refund", "退款"), "kind.interaction": ("interaction", "互动"),
    "kind.complaint": ("complaint", "投诉"), "kind.classification": ("classification", "分级变化"),
    "kind.notification": ("message", "消息"),
    "consent.email": ("e-mail", "邮件"), "consent.sms": ("SMS", "短信"), "consent.care_messages": ("care messages", "关怀消息"),
    "consent.marketing": ("marketing", "营销"),
}

#: Class names per dimension, in both languages (the services use the English codes).
TIERS: dict[str, dict[str, tuple[str, str]]] = {
    "value_tier": {"high": ("High value", "高价值"), "medium": ("Medium value", "中价值"), "low": ("Low value", "低价值")},
    "abc_class": {"A": ("Class A", "A 类"), "B": ("Class B", "B 类"), "C": ("Class C", "C 类")},
    "vip": {"vip": ("VIP", "VIP"), "regular": ("Regular", "普通")},
    "loyalty": {"loyal": ("Loyal", "忠诚"), "general": ("General", "一般"), "churn_risk": ("Churn risk", "流失风险")},
    "lifecycle": {"prospect": ("Prospect", "潜在客户"), "new": ("New", "新客户"), "repeat": ("Repeat", "复购客户"),
                  "loyal": ("Loyal", "忠诚客户"), "at_risk": ("At risk", "有流失风险"), "churned": ("Churned", "已流失"),
                  "reactivated": ("Reactivated", "已召回")},
    "potential": {"high": ("High potential", "高潜力"), "medium": ("Medium potential", "中潜力"),
                  "low": ("Low potential", "低潜力")},
    "rfm_segment": {"Champions": ("Champions", "冠军客户"), "Loyal": ("Loyal", "忠诚客户"),
                    "Potential Loyalist": ("Potential loyalist", "潜在忠诚客户"), "New": ("New", "新客户"),
                    "Promising": ("Promising", "有潜力"), "Need Attention": ("Need attention", "需要关注"),
                    "About to Sleep": ("About to sleep", "即将沉睡"), "At Risk": ("At risk", "有风险"),
                    "Can't Lose Them": ("Can't lose them", "不能失去"), "Hibernating": ("Hibernating", "休眠"),
                    "Lost": ("Lost", "已流失")},
}
DIMENSIONS = ("value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def pick(language: str | None, default: str) -> str:
    return language if language in LANGUAGES else default


class Translator:
    """The words and formats of one language, for one request."""

    def __init__(self, language: str, timezone: str) -> None:
        self.language = language
        self.zh = language == "zh-CN"
        self.zone = ZoneInfo(timezone)

    def __call__(self, key: str, **values: Any) -> str:
        entry = WORDS.get(key)
        text = (entry[1] if self.zh else entry[0]) if entry else key
        return text.format(**values) if values else text

    def word(self, prefix: str, code: Any) -> str:
        """``code`` under ``prefix`` (a status, a reason), itself when there is no entry."""
        if code is None:
            return "—"
        entry = WORDS.get(f"{prefix}.{code}")
        return (entry[1] if self.zh else entry[0]) if entry else str(code).replace("_", " ")

    def tier(self, dimension: str, value: Any) -> str:
        if value is None:
            return "—"
        entry = TIERS.get(dimension, {}).get(str(value))
        return (entry[1] if self.zh else entry[0]) if entry else str(value)

    def when(self, value: Any, *, with_time: bool = True) -> str:
        """A time from the services (ISO 8601) in the console's time zone and the user's format."""
        moment = _parse(value)
        if moment is None:
            return "—" if value in (None, "") else str(value)
        if isinstance(moment, datetime):
            moment = moment.astimezone(self.zone) if moment.tzinfo else moment
            if not with_time:
                moment = moment.date()
        if not isinstance(moment, datetime):
            return f"{moment.year}年{moment.month}月{moment.day}日" if self.zh else \
                f"{_MONTHS[moment.month - 1]} {moment.day}, {moment.year}"
        if self.zh:
            return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M}"
        hour = moment.hour % 12 or 12
        return (f"{_MONTHS[moment.month - 1]} {moment.day}, {moment.year}, {hour}:{moment:%M} "
                f"{'AM' if moment.hour < 12 else 'PM'}")

    def percent(self, value: Any) -> str:
        return "—" if value is None else f"{float(value) * 100:.1f}%"


def _parse(value: Any) -> datetime | date | None:
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
